"""Fetching job artifacts over real loopback HTTP: download, cache with ETag, zip packages."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from aiohttp import web

from runtime import artifact
from runtime.artifact import fetch_artifact
from runtime.job import ArtifactError, load_job

JOB = """
from runtime.job import IterableSource, Job, ServerSentEventsSink
from runtime.stages import ScalarStage

def job():
    return Job(IterableSource([1]), [ScalarStage(batch_fn=lambda b: b)], ServerSentEventsSink(),
               name={name!r})
"""


class ArtifactServer:
    """Serves files with an ETag and counts full downloads and 304s."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.downloads = 0
        self.not_modified = 0
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = self.files.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404, text="no such artifact")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.downloads += 1
        return web.Response(body=body, headers={"ETag": etag})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/artifacts/{name}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}/artifacts/"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def zipped(entries: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in entries.items():
            z.writestr(name, text)
    return buffer.getvalue()


async def test_download_then_revalidate_then_use_the_cache_when_the_server_is_gone(
    tmp_path: Path,
) -> None:
    server = ArtifactServer({"job.py": JOB.format(name="from-http").encode()})
    await server.start()
    url = server.base + "job.py"
    first = await fetch_artifact(url, tmp_path)
    assert first.source == "downloaded" and load_job(first.spec).name == "from-http"
    again = await fetch_artifact(url, tmp_path)
    assert again.source == "cached" and again.spec == first.spec
    assert (server.downloads, server.not_modified) == (1, 1)
    with pytest.raises(ArtifactError, match="HTTP 404"):
        await fetch_artifact(server.base + "missing.py", tmp_path)
    await server.stop()
    offline = await fetch_artifact(url, tmp_path)
    assert offline.source == "cached" and load_job(offline.spec).name == "from-http"
    with pytest.raises(ArtifactError, match="download failed"):
        await fetch_artifact(server.base + "never-fetched.py", tmp_path)


async def test_zip_artifacts_hold_one_package_or_one_module(tmp_path: Path) -> None:
    server = ArtifactServer(
        {
            "pkg.zip": zipped(
                {
                    "mypkg/__init__.py": "from .jobdef import job\n",
                    "mypkg/jobdef.py": JOB.format(name="zipped-package"),
                }
            ),
            "mod.zip": zipped({"only.py": JOB.format(name="zipped-module")}),
            "two.zip": zipped({"a.py": "", "b.py": ""}),
            "evil.zip": zipped({"../escape.py": ""}),
            "bad.zip": b"not a zip at all",
        }
    )
    await server.start()
    pkg = await fetch_artifact(server.base + "pkg.zip", tmp_path)
    assert load_job(pkg.spec).name == "zipped-package"
    mod = await fetch_artifact(server.base + "mod.zip", tmp_path)
    assert load_job(mod.spec).name == "zipped-module"
    with pytest.raises(ArtifactError, match="one package"):
        await fetch_artifact(server.base + "two.zip", tmp_path)
    with pytest.raises(ArtifactError, match="unsafe path"):
        await fetch_artifact(server.base + "evil.zip", tmp_path)
    with pytest.raises(ArtifactError, match="not a valid zip"):
        await fetch_artifact(server.base + "bad.zip", tmp_path)
    await server.stop()


async def test_paths_file_urls_and_module_names(tmp_path: Path) -> None:
    job_file = tmp_path / "local_job.py"
    job_file.write_text(JOB.format(name="local"))
    by_path = await fetch_artifact(str(job_file), tmp_path / "cache")
    by_url = await fetch_artifact(job_file.as_uri(), tmp_path / "cache")
    assert by_path.source == by_url.source == "local"
    assert load_job(by_url.spec).name == "local"
    module = await fetch_artifact("tests.integration.jobs.counter", tmp_path / "cache")
    assert module.source == "module" and load_job(module.spec).name == "counter"
    with pytest.raises(ArtifactError, match="no such file"):
        await fetch_artifact(str(tmp_path / "nope.py"), tmp_path / "cache")
    with pytest.raises(ArtifactError, match="empty"):
        await fetch_artifact("", tmp_path / "cache")


# ------------------------------------------------------------------------ zip bombs, cache


def zip_file(path: Path, entries: dict[str, bytes | int]) -> Path:
    """A deflated zip; an int entry is that many zero bytes, written without holding them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            with z.open(name, "w", force_zip64=True) as f:
                if isinstance(data, bytes):
                    f.write(data)
                else:
                    for _ in range(data // (1 << 20)):
                        f.write(bytes(1 << 20))
    return path


def unpacked(cache: Path) -> list[str]:
    folder = cache / "unpacked"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_a_zip_bomb_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bomb = zip_file(tmp_path / "bomb.zip", {"pkg/__init__.py": b"", "pkg/zeros.bin": 64 << 20})
    assert bomb.stat().st_size < 1 << 20  # 64 MiB of zeros in well under 1 MiB
    with pytest.raises(ArtifactError, match=r"'pkg/zeros.bin' expands \d+ times .*zip bomb"):
        await fetch_artifact(str(bomb), cache)
    assert unpacked(cache) == []  # no partial unpack left behind


async def test_too_many_bytes_or_entries_in_all_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Incompressible entries, each under the ratio limit, that add up past the total."""
    monkeypatch.setattr(artifact, "MAX_UNPACKED_BYTES", 1 << 20)
    monkeypatch.setattr(artifact, "MAX_ZIP_ENTRIES", 10)

    cache = tmp_path / "cache"
    big = zip_file(tmp_path / "big.zip", {f"pkg/{i}.bin": os.urandom(300_000) for i in range(4)})
    with pytest.raises(ArtifactError, match=f"more than {1 << 20} bytes"):
        await fetch_artifact(str(big), cache)
    many = zip_file(tmp_path / "many.zip", {f"pkg/m{i}.py": b"" for i in range(11)})
    with pytest.raises(ArtifactError, match="11 entries, more than the 10 allowed"):
        await fetch_artifact(str(many), cache)
    assert unpacked(cache) == []
    fits = zip_file(
        tmp_path / "fits.zip",
        {"pkg/__init__.py": JOB.format(name="fits").encode(), "pkg/data.bin": os.urandom(900_000)},
    )
    assert load_job((await fetch_artifact(str(fits), cache)).spec).name == "fits"


async def test_only_the_most_recently_used_unpacked_zips_are_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "unpacked" / ".unpack-stale").mkdir(parents=True)
    (cache / "unpacked" / ".unpack-fresh").mkdir()  # another worker unpacking right now
    hour_ago = time.time() - 3700
    os.utime(cache / "unpacked" / ".unpack-stale", (hour_ago, hour_ago))
    specs = []
    for i in range(artifact.KEEP_UNPACKED + 3):
        source = {"only.py": JOB.format(name=f"v{i}").encode()}
        spec = (await fetch_artifact(str(zip_file(tmp_path / f"v{i}.zip", source)), cache)).spec
        assert load_job(spec).name == f"v{i}"
        specs.append(spec)
        done = [n for n in unpacked(cache) if not n.startswith(".")]
        assert len(done) <= artifact.KEEP_UNPACKED
        assert Path(spec).parent.name in done
    assert ".unpack-stale" not in unpacked(cache) and ".unpack-fresh" in unpacked(cache)
    assert not Path(specs[0]).exists()  # the oldest went
