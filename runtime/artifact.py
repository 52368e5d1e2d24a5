"""Fetching a job artifact for a worker: download once, cache, unpack, hand to ``load_job``.

An artifact location (the job's ``jobJarUrl``) is one of:

- ``http://`` / ``https://`` URL: downloaded into the cache, revalidated with ``ETag`` /
  ``If-None-Match`` on later starts (a 304 reuses the cached copy; if the server cannot be
  reached, a cached copy is used with a warning), written atomically;
- ``file://`` URL or a path: used in place;
- anything else: an importable module name (e.g. ``examples.synthetic_counts``).

A ``.py`` file is loaded as a module; a ``.zip`` is unpacked into the cache (once per content)
and loaded as a package: its root if it has ``__init__.py``, else its only top-level folder.
Whatever goes wrong is an ``ArtifactError`` naming the artifact, for the job's status.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
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
                    async for chunk in resp.content.iter_chunked(1 << 16):
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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    out = cache_dir / "unpacked" / digest
    if not out.exists():
        tmp = Path(tempfile.mkdtemp(dir=_ensure(cache_dir / "unpacked"), prefix=".unpack-"))
        try:
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise ArtifactError(location, f"unsafe path in zip: {name!r}")
                z.extractall(tmp)
            os.replace(tmp, out)
        except zipfile.BadZipFile as e:
            raise ArtifactError(location, f"not a valid zip file: {e}") from e
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
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


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
