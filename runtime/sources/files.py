"""A file source: the lines of a text file, optionally following what is appended to it.

Lines lose their ``\\n`` (and ``\\r\\n``) and are decoded as UTF-8 (undecodable bytes become
U+FFFD), or parsed as JSON with ``json=True`` (blank lines skipped, bad lines counted in
``decode_errors`` and skipped). Without ``follow`` the source ends at the end of the file (a
last line without a newline included). With ``follow`` it reads what is there, then polls
every ``poll_interval`` seconds for more, like ``tail -F -n +1``: an unfinished last line
waits for its newline, a file that shrank (truncated) is read again from the start, and a
file replaced by another one (rotated: another inode at the path) is reopened from its
start. A truncation followed, between two polls, by more writes than were read before
cannot be seen.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from runtime.context import Context, Counter

log = structlog.get_logger()

CHUNK = 64 * 1024


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115  # closed by the reader's finally
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"file source: no such file: {path}", str(path)
        ) from None
    except IsADirectoryError:
        raise ValueError(f"file source: {path} is a directory, not a file") from None


@dataclass(frozen=True)
class FileSource:
    """The lines of the file at `path`, in batches of up to `batch_size`; see the module
    docstring. A missing path raises FileNotFoundError naming it when iteration starts."""

    path: str | os.PathLike[str]
    follow: bool = False
    json: bool = False
    batch_size: int = 1024
    poll_interval: float = 0.05

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {self.poll_interval}")

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        path = Path(self.path)
        emitted = context.metrics.counter("events_emitted")
        bad = context.metrics.counter("decode_errors")
        truncations = context.metrics.counter("file_truncations")
        f = _open(path)
        rest = b""
        try:
            while True:
                chunk = f.read(CHUNK)
                if chunk:
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for start in range(0, len(lines), self.batch_size):
                        batch = self._decode(lines[start : start + self.batch_size], bad)
                        if batch:
                            emitted.inc(len(batch))
                            yield batch
                    await asyncio.sleep(0)  # a big file does not hold the loop
                    continue
                if not self.follow:
                    batch = self._decode([rest], bad) if rest else []
                    if batch:
                        emitted.inc(len(batch))
                        yield batch
                    return
                try:
                    st = os.stat(path)
                except FileNotFoundError:  # being rotated: wait for the new file
                    await asyncio.sleep(self.poll_interval)
                    continue
                if st.st_ino != os.fstat(f.fileno()).st_ino:
                    log.info("file_source_rotated", path=str(path))
                    f.close()
                    f = _open(path)
                    rest = b""
                elif st.st_size < f.tell():
                    log.info("file_source_truncated", path=str(path), size=st.st_size)
                    truncations.inc()
                    f.seek(0)
                    rest = b""
                else:
                    await asyncio.sleep(self.poll_interval)
        finally:
            f.close()

    def _decode(self, lines: list[bytes], bad: Counter) -> list[Any]:
        if not self.json:
            return [
                (line[:-1] if line.endswith(b"\r") else line).decode(errors="replace")
                for line in lines
            ]
        out: list[Any] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if not bad.value:
                    log.warning("file_source_bad_json", path=str(self.path), line=line[:200])
                bad.inc()
        return out
