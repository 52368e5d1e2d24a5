"""An agent's `/files` endpoints, as Mesos' src/files/files.cpp serves them, confined to the
agent's task sandboxes (`<work-dir>/slaves`, where each executor's `directory` of the agent's
`/state` lies):

- `GET /files/browse?path=P`: the entries of directory P as FileInfo JSON
  (`path`, `nlink`, `size`, `mtime` in seconds, `mode` as `ls -l` prints it, `uid`, `gid`).
- `GET /files/read?path=P&offset=N&length=M`: `{"data": ..., "offset": N}`, at most 16 pages
  per read; `offset=-1` (or none) answers the file's size as `offset` and no data, as Mesos'
  webui pailer asks first.
- `GET /files/download?path=P`: the file itself, as an attachment.

Errors are Mesos': 400 without `path` ("Expecting 'path=value' in query."), for a bad
`offset`/`length`, or for reading or downloading a directory; 404 for a path that does not
exist; 403 for a path outside the sandboxes, however written (`..`, a symbolic link out of a
sandbox), which is never opened.
"""

from __future__ import annotations

import grp
import mimetypes
import os
import pwd
import stat
from pathlib import Path
from typing import Any

from aiohttp import web

from mesoslite.httputil import json, text

ROOT_KEY = web.AppKey("sandboxes_root", Path)
MAX_READ = 16 * os.sysconf("SC_PAGESIZE")  # Mesos caps a read at 16 pages


class Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _resolve(request: web.Request) -> Path:
    """The real path the `path` parameter names, inside the sandboxes, that exists."""
    raw = request.query.get("path")
    if not raw:
        raise Refused(text(400, "Expecting 'path=value' in query.\n"))
    root = request.app[ROOT_KEY]
    path = Path(os.path.realpath(raw if os.path.isabs(raw) else root / raw))
    if path != root and root not in path.parents:
        raise Refused(text(403, f"'{raw}' is outside the agent's sandboxes\n"))
    if not path.exists():
        raise Refused(text(404, f"No file or directory at '{raw}'\n"))
    return path


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def file_info(path: Path) -> dict[str, Any]:
    st = path.lstat()
    return {
        "path": str(path),
        "nlink": st.st_nlink,
        "size": st.st_size,
        "mtime": int(st.st_mtime),
        "mode": stat.filemode(st.st_mode),
        "uid": _owner(st.st_uid),
        "gid": _group(st.st_gid),
    }


def _integer(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise Refused(text(400, f"Failed to parse {name}: {raw!r}.\n")) from None
    if value < -1:
        raise Refused(text(400, f"Negative {name} provided: {value}.\n"))
    return value


async def browse(request: web.Request) -> web.Response:
    try:
        path = _resolve(request)
    except Refused as e:
        return e.response
    if not path.is_dir():
        return json([file_info(path)])
    return json([file_info(p) for p in sorted(path.iterdir())])


async def read(request: web.Request) -> web.Response:
    try:
        path = _resolve(request)
        offset = _integer(request, "offset")
        length = _integer(request, "length")
    except Refused as e:
        return e.response
    if path.is_dir():
        return text(400, "Cannot read a directory.\n")
    size = path.stat().st_size
    if offset is None or offset == -1:
        return json({"data": "", "offset": size})
    if length is None or length == -1:
        length = size - offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(max(0, min(length, MAX_READ)))
    return json({"data": data.decode("utf-8", errors="replace"), "offset": offset})


async def download(request: web.Request) -> web.StreamResponse:
    try:
        path = _resolve(request)
    except Refused as e:
        return e.response
    if path.is_dir():
        return text(400, "Cannot download a directory.\n")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": kind,
            "Content-Disposition": f'attachment; filename="{path.name}"',
        },
    )


def add_routes(app: web.Application, root: Path) -> None:
    """Serve the sandboxes under `root` (created if missing, so that it resolves)."""
    root.mkdir(parents=True, exist_ok=True)
    app[ROOT_KEY] = Path(os.path.realpath(root))
    for name, handler in (("browse", browse), ("read", read), ("download", download)):
        app.router.add_get(f"/files/{name}", handler)
        app.router.add_get(f"/files/{name}.json", handler)
