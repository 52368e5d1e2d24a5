"""The fetcher: CommandInfo.uris downloaded into a sandbox before its task or executor starts.

As Mesos' fetcher (src/launcher/fetcher.cpp, mesos.proto CommandInfo.URI): each URI's `value`
is an http(s) URL, a `file://` URL or an absolute path; it lands in the sandbox under
`output_file` if given, else under the last segment of its path. `executable` makes it
executable (and is never extracted); otherwise `extract` unpacks a .tar, .tar.gz, .tgz,
.tar.bz2, .tar.xz, .txz or .zip archive into the sandbox (the archive stays). `cache` keeps
the download under the agent's work dir (`fetch-cache/`, one file per URI) and copies it from
there on later fetches. Anything that goes wrong raises FetchError naming the URI; the agent
reports it as Mesos' agent does: TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED.

An archive with a member whose name is absolute or leaves the sandbox through `..` is refused
before anything is written (tarfile and zipfile would rename such members instead); tar members
are then unpacked through tarfile's `data` filter (PEP 706), which refuses links and devices
that lead out of the sandbox.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger()

HTTP_TIMEOUT = 30.0
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".txz")
CACHE_DIR = "fetch-cache"


class FetchError(RuntimeError):
    """A URI could not be fetched; the message names it."""

    def __init__(self, uri: str, why: str) -> None:
        super().__init__(f"Failed to fetch '{uri}': {why}")
        self.uri = uri


@dataclass(frozen=True, slots=True)
class Uri:
    value: str
    executable: bool = False
    extract: bool = True  # mesos.proto's default
    cache: bool = False
    output_file: str | None = None


_FLAGS = ("executable", "extract", "cache")


def problem(command: dict[str, Any]) -> str | None:
    """Why CommandInfo.uris is malformed (TASK_ERROR), or None."""
    uris = command.get("uris", [])
    if not isinstance(uris, list):
        return "CommandInfo.uris must be a list of URI"
    for i, uri in enumerate(uris):
        where = f"CommandInfo.uris[{i}]"
        if not isinstance(uri, dict) or not isinstance(uri.get("value"), str) or not uri["value"]:
            return f"{where}.value is required"
        for flag in _FLAGS:
            if not isinstance(uri.get(flag, False), bool):
                return f"{where}.{flag} must be a boolean"
        output = uri.get("output_file")
        if output is not None and (
            not isinstance(output, str) or not output or _escapes(PurePosixPath(output))
        ):
            return f"{where}.output_file must be a relative path inside the sandbox"
    return None


def parse(command: dict[str, Any]) -> list[Uri]:
    """The URIs of a CommandInfo that `problem` accepted."""
    return [
        Uri(
            value=u["value"],
            executable=u.get("executable", False),
            extract=u.get("extract", True),
            cache=u.get("cache", False),
            output_file=u.get("output_file") or None,
        )
        for u in command.get("uris") or []
    ]


def fetch_all(uris: list[Uri], sandbox: Path, work_dir: Path) -> None:
    """Fetch every URI into `sandbox`, in order (blocking: run it on a thread)."""
    sandbox.mkdir(parents=True, exist_ok=True)
    for uri in uris:
        target = sandbox / (uri.output_file or _basename(uri))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if uri.cache:
                _fetch_cached(uri.value, target, work_dir / CACHE_DIR)
            else:
                _download(uri.value, target)
            if uri.executable:
                target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            elif uri.extract:
                _extract(target, sandbox)
        except FetchError:
            raise
        except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile) as e:
            raise FetchError(uri.value, str(e)) from e
        log.debug("uri_fetched", uri=uri.value, target=str(target), cache=uri.cache)


def _basename(uri: Uri) -> str:
    name = PurePosixPath(unquote(urlsplit(uri.value).path)).name
    if not name or name in (".", ".."):
        raise FetchError(uri.value, "no file name in the URI: set output_file")
    return name


def _escapes(path: PurePosixPath) -> bool:
    return path.is_absolute() or ".." in path.parts


def _fetch_cached(value: str, target: Path, cache_dir: Path) -> None:
    """Download once per URI into the cache (atomically), then copy to the sandbox."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / hashlib.sha256(value.encode()).hexdigest()
    if not entry.exists():
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.partial")
        try:
            _download(value, partial)
            os.replace(partial, entry)
        finally:
            partial.unlink(missing_ok=True)
        log.info("fetch_cache_added", uri=value)
    shutil.copyfile(entry, target)


def _download(value: str, target: Path) -> None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https"):
        try:
            with (
                urllib.request.urlopen(value, timeout=HTTP_TIMEOUT) as resp,
                open(target, "wb") as out,
            ):
                shutil.copyfileobj(resp, out)
        except urllib.error.HTTPError as e:
            raise FetchError(value, f"HTTP {e.code} {e.reason}") from e
        except urllib.error.URLError as e:
            raise FetchError(value, str(e.reason)) from e
        return
    if parts.scheme == "file":
        source = Path(unquote(parts.path))
    elif parts.scheme == "":
        source = Path(value)
    else:
        raise FetchError(value, f"mesoslite fetches http, https and file URIs, not {parts.scheme}")
    if not source.is_absolute():
        raise FetchError(
            value,
            "A relative path was passed for the resource but the Mesos framework home was"
            " not specified",
        )
    if not source.is_file():
        raise FetchError(value, "not a file")
    shutil.copyfile(source, target)


def _extract(archive: Path, sandbox: Path) -> None:
    name = archive.name.lower()
    if name.endswith(TAR_SUFFIXES):
        with tarfile.open(archive) as tar:
            _refuse_escapes(archive, sandbox, tar.getnames())
            try:
                tar.extractall(sandbox, filter="data")
            except tarfile.FilterError as e:
                raise ValueError(f"{archive.name}: a member escapes the sandbox: {e}") from e
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            _refuse_escapes(archive, sandbox, zf.namelist())
            zf.extractall(sandbox)


def _refuse_escapes(archive: Path, sandbox: Path, members: list[str]) -> None:
    """Refuse the whole archive if a member's name leaves the sandbox (the libraries would
    rewrite such names and extract them elsewhere than the archive says)."""
    root = sandbox.resolve()
    for member in members:
        if _escapes(PurePosixPath(member)) or not (root / member).resolve().is_relative_to(root):
            raise ValueError(f"{archive.name}: member {member!r} escapes the sandbox")
