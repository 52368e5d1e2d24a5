"""The default metadata store: an append-only event log and snapshots on local disk."""
