"""Fetching a job artifact for a worker: download once, cache, unpack, hand to ``load_job``.

An artifact location (the job's ``jobJarUrl``) is one of:

- ``http://`` / ``https://`` URL: downloaded into the cache, revalidated with ``ETag`` /
  ``If-None-Match`` on later starts (a 304 reuses the cached copy; if the server cannot be
  reached, a cached copy is used with a warning), written atomically;
- ``file://`` URL or a path: used in place;
- anything else: an importable module name (e.g. ``examples.synthetic_counts``).

A ``.py`` file is loaded as a module; a ``.zip`` is unpacked into the cache (once per content)
and loaded as a package: its root if it has ``__init__.py``, else its only top-level folder.
A zip bomb is refused (a 2 MB zip of zeros unpacks to 2 GiB): at most MAX_ZIP_ENTRIES
entries and MAX_UNPACKED_BYTES in all, no large entry expanding over MAX_ZIP_RATIO times; a
failed unpack leaves nothing, and only the KEEP_UNPACKED most recently used zips stay unpacked.
Whatever goes wrong is an ``ArtifactError`` naming the artifact, for the job's status.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
import structlog

from common.task_environment import DEFAULT_ARTIFACT_CACHE as DEFAULT_CACHE
from runtime.job import ArtifactError

log = structlog.get_logger()

CHUNK = 1 << 16
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_RATIO = 200
"""Uncompressed over compressed size; source code deflates some 3-10 times, zeros 1000."""
RATIO_CHECKED_ABOVE = 1024 * 1024
"""Entries this small are not checked for their ratio: they cannot make a bomb by themselves."""
KEEP_UNPACKED = 5
STALE_UNPACK_SECS = 3600.0


@dataclass(frozen=True)
class FetchedArtifact:
    """Where the artifact can be loaded from (a path or a module name), and how we got it."""

    spec: str
    source: str
    """``downloaded``, ``cached`` (304 or server unreachable), ``local`` or ``module``."""


async def fetch_artifact(
    location: str,
    cache_dir: Path = DEFAULT_CACHE,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 60.0,
) -> FetchedArtifact:
    """Resolve `location` to something ``load_job`` takes, downloading into `cache_dir`."""
    if not location:
        raise ArtifactError(location, "no artifact location given (the job's jobJarUrl is empty)")
    scheme = urlsplit(location).scheme
    if scheme in ("http", "https"):
        if session is None:
            async with aiohttp.ClientSession() as own:
                path, source = await _download(location, cache_dir, own, timeout)
        else:
            path, source = await _download(location, cache_dir, session, timeout)
        return FetchedArtifact(_loadable(path, location, cache_dir), source)
    if scheme == "file":
        path = Path(unquote(urlsplit(location).path))
    elif os.sep in location or location.endswith((".py", ".zip")) or os.path.exists(location):
        path = Path(location)
    else:
        return FetchedArtifact(location, "module")
    if not path.exists():
        raise ArtifactError(location, f"no such file or directory: {path}")
    return FetchedArtifact(_loadable(path, location, cache_dir), "local")


def _entry_dir(url: str, cache_dir: Path) -> Path:
    return cache_dir / hashlib.sha256(url.encode()).hexdigest()[:24]


def _file_name(url: str) -> str:
    name = os.path.basename(unquote(urlsplit(url).path)) or "artifact"
    if name.endswith(".zip") or name.endswith(".py"):
        return name
    return name + ".py"


async def _download(
    url: str, cache_dir: Path, session: aiohttp.ClientSession, timeout: float
) -> tuple[Path, str]:
    entry = _entry_dir(url, cache_dir)
    target = entry / _file_name(url)
    meta_path = entry / "meta.json"
    etag = None
    if target.exists() and meta_path.exists():
        try:
            etag = orjson.loads(meta_path.read_bytes()).get("etag")
        except (orjson.JSONDecodeError, AttributeError):
            etag = None
    headers = {"If-None-Match": etag} if etag else {}
    try:
        async with session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            if resp.status == 304 and target.exists():
                return target, "cached"
            if resp.status != 200:
                raise ArtifactError(url, f"download failed: HTTP {resp.status} {resp.reason}")
            entry.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry, prefix=".download-")
            try:
                with os.fdopen(fd, "wb") as f:
                    size = 0
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD_BYTES:
                            raise ArtifactError(url, f"larger than {MAX_DOWNLOAD_BYTES} bytes")
                        f.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            meta_path.write_bytes(orjson.dumps({"url": url, "etag": resp.headers.get("ETag")}))
            log.info("artifact_downloaded", url=url, bytes=target.stat().st_size)
            return target, "downloaded"
    except (aiohttp.ClientError, TimeoutError) as e:
        if target.exists():
            log.warning("artifact_server_unreachable_using_cache", url=url, error=repr(e))
            return target, "cached"
        raise ArtifactError(url, f"download failed: {e!r}") from e


def _loadable(path: Path, location: str, cache_dir: Path) -> str:
    """A path ``load_job`` takes: the file or folder itself, or a zip's unpacked package."""
    if path.suffix != ".zip":
        return str(path)
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:24]
    unpacked = _ensure(cache_dir / "unpacked")
    out = unpacked / digest
    if out.exists():
        os.utime(out)  # recently used: kept by _prune
    else:
        tmp = Path(tempfile.mkdtemp(dir=unpacked, prefix=".unpack-"))
        try:
            _unzip(path, tmp, location)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _prune(unpacked, keep=out)
    if (out / "__init__.py").exists():
        return str(out)
    packages = [p for p in out.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    modules = [p for p in out.iterdir() if p.suffix == ".py"]
    if len(packages) == 1:
        return str(packages[0])
    if not packages and len(modules) == 1:
        return str(modules[0])
    raise ArtifactError(
        location,
        "a zip artifact must hold one package (a folder with __init__.py) or one .py module "
        f"at its top level; found {sorted(p.name for p in (*packages, *modules))}",
    )


def _unzip(path: Path, into: Path, location: str) -> None:
    """Unpack `path` into `into`, refusing zip bombs: too many entries, too many bytes in all
    (counted as written, whatever the headers claim), or an entry compressed too well."""
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise ArtifactError(
                    location,
                    f"zip has {len(entries)} entries, more than the {MAX_ZIP_ENTRIES} allowed",
                )
            written = 0
            for entry in entries:
                name = entry.filename
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ArtifactError(location, f"unsafe path in zip: {name!r}")
                ratio = entry.file_size / max(entry.compress_size, 1)
                if entry.file_size > RATIO_CHECKED_ABOVE and ratio > MAX_ZIP_RATIO:
                    raise ArtifactError(
                        location,
                        f"zip entry {name!r} expands {ratio:.0f} times "
                        f"(more than {MAX_ZIP_RATIO}): a zip bomb?",
                    )
                target = into / name
                if entry.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(entry) as source, target.open("wb") as sink:
                    while chunk := source.read(CHUNK):
                        written += len(chunk)
                        if written > MAX_UNPACKED_BYTES:
                            raise ArtifactError(
                                location,
                                f"zip unpacks to more than {MAX_UNPACKED_BYTES} bytes: a zip bomb?",
                            )
                        sink.write(chunk)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        EOFError,
        RuntimeError,
    ) as e:  # RuntimeError: an encrypted entry
        raise ArtifactError(location, f"not a valid zip file: {e}") from e


def _prune(unpacked: Path, keep: Path) -> None:
    """Keep the KEEP_UNPACKED most recently used unpacked zips (and `keep`); remove the rest,
    and unpacks left half done by a process that died over an hour ago."""
    now = time.time()
    done: list[tuple[float, Path]] = []
    for entry in unpacked.iterdir():
        try:
            mtime = entry.stat().st_mtime
        except FileNotFoundError:
            continue  # removed by another worker meanwhile
        if not entry.name.startswith("."):
            done.append((mtime, entry))
        elif entry.name.startswith(".unpack-") and now - mtime > STALE_UNPACK_SECS:
            shutil.rmtree(entry, ignore_errors=True)
    done.sort(reverse=True)
    for _, old in done[KEEP_UNPACKED:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            log.info("artifact_unpacked_removed", path=str(old))


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
