"""Job artifacts on Mantis' v1 paths: upload, list, and download for workers, in one folder.

`POST /api/v1/jobArtifacts?name=` takes the raw body (`application/octet-stream`, a zip or a
Python type), or a multipart form whose first file part names the artifact (`?name=` wins). A name is a plain file name: only `[A-Za-z0-9._-]`,
not starting with a dot, at most 255 characters, never `names`; anything else is a 400
naming `name`, so nothing is ever written outside the folder. The body streams into a
temporary file in the folder, is fsynced, then renamed over the name: a reader sees the old
artifact or the new one, never half of one. A body over the limit (64 MiB unless told) is a
413 and leaves nothing behind.

`GET /api/v1/jobArtifacts/{name}` streams the file with an `ETag` (aiohttp's
`"<mtime_ns>-<size>"`, hex) and `Cache-Control: no-cache`: a worker that kept a copy sends
`If-None-Match` and gets a 304 while the artifact is unchanged (runtime/artifact.py).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import BodyPartReader, web

from adapters.http.parsing import SAFE_ARTIFACT_NAME, check_artifact_name
from adapters.http.responses import json_response
from core.errors import InvalidRequest, NotFound

log = structlog.get_logger()

BASE = "/api/v1/jobArtifacts"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CHUNK = 1 << 16
UPLOAD_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/zip",
        "application/x-zip-compressed",
        "text/x-python",
        "application/x-python-code",
        "multipart/form-data",
    }
)
"""The body types an upload takes (checked by adapters.http.security): never `text/plain`."""


@dataclass(frozen=True, slots=True)
class ArtifactStore:
    """The folder artifacts live in, and the largest upload accepted."""

    folder: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    def path(self, name: str) -> Path:
        return self.folder / check_artifact_name(name)


ARTIFACTS = web.AppKey("artifacts", ArtifactStore)


def etag_of(st: os.stat_result) -> str:
    """The ETag aiohttp's FileResponse sends for a file with this stat."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(BASE, upload_artifact)
    router.add_get(BASE, list_artifacts)
    router.add_get(BASE + "/names", artifact_names)
    router.add_get(BASE + "/{name}", download_artifact)


def _too_large(store: ArtifactStore) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        store.max_bytes, reason=f"artifact larger than {store.max_bytes} bytes"
    )


async def _chunks(request: web.Request) -> tuple[str | None, AsyncIterator[bytes]]:
    """(the name the body gives, if any; the body's bytes): raw, or a multipart file part."""
    if not request.content_type.startswith("multipart/"):
        return None, request.content.iter_chunked(CHUNK)
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and not (isinstance(part, BodyPartReader) and part.filename):
            await part.release()
            part = await reader.next()
    except ValueError as e:
        raise InvalidRequest("body", f"malformed multipart body: {e}") from None
    if part is None:
        raise InvalidRequest("body", "the multipart body has no file part")
    file_part = part

    async def read() -> AsyncIterator[bytes]:
        while chunk := await file_part.read_chunk(CHUNK):
            yield chunk

    return file_part.filename, read()


async def upload_artifact(request: web.Request) -> web.Response:
    store = request.app[ARTIFACTS]
    given = request.query.get("name")
    if given is not None:
        check_artifact_name(given)
    if request.content_length is not None and request.content_length > store.max_bytes:
        raise _too_large(store)
    named, chunks = await _chunks(request)
    name = check_artifact_name(given or named or "")
    store.folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store.folder, prefix=".upload-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > store.max_bytes:
                    raise _too_large(store)
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        target = store.path(name)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    st = target.stat()
    log.info("artifact_uploaded", name=name, bytes=size)
    url = request.url.with_path(f"{BASE}/{name}").with_query(None)
    return json_response(
        {
            "name": name,
            "size": size,
            "sha256": digest.hexdigest(),
            "etag": etag_of(st),
            "createdAt": st.st_mtime_ns // 1_000_000,
            "url": str(url),
        },
        status=201,
    )


def _stored(request: web.Request) -> list[tuple[str, os.stat_result]]:
    """Artifacts by name, filtered by `prefix` and `contains` (temporary files left out)."""
    folder = request.app[ARTIFACTS].folder
    prefix, contains = request.query.get("prefix", ""), request.query.get("contains", "")
    if not folder.is_dir():
        return []
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if (
                SAFE_ARTIFACT_NAME.fullmatch(entry.name)
                and entry.is_file()
                and entry.name.startswith(prefix)
                and contains in entry.name
            ):
                found.append((entry.name, entry.stat()))
    return sorted(found)


async def list_artifacts(request: web.Request) -> web.Response:
    return json_response(
        [
            {
                "name": name,
                "size": st.st_size,
                "createdAt": st.st_mtime_ns // 1_000_000,
                "etag": etag_of(st),
                "url": f"{BASE}/{name}",
            }
            for name, st in _stored(request)
        ]
    )


async def artifact_names(request: web.Request) -> web.Response:
    return json_response([name for name, _ in _stored(request)])


async def download_artifact(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = request.app[ARTIFACTS].path(name)
    if not path.is_file():
        raise NotFound("artifact", name)
    return web.FileResponse(
        path, headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-cache"}
    )
