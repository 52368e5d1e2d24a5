"""The default metadata store: an append-only event log and snapshots on local disk.

`log.EventLog` is the Store port on a folder: segments of CRC-framed records (`records`),
fsync per batch, group commit for asyncio callers, torn-tail recovery, snapshots with
compaction (what a snapshot keeps is decided by the pure `core.compaction`) and an archive
of terminal jobs. `codec` turns events into tagged JSON and back; `memory.MemoryStore` is
the in-memory fake.
"""
