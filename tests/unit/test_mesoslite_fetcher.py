"""mesoslite.fetcher against real files and a loopback HTTP server: what lands in the sandbox,
archives unpacked (and members escaping the sandbox refused), the cache, and the errors."""

from __future__ import annotations

import http.server
import io
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesoslite import container, fetcher
from mesoslite.fetcher import FetchError, Uri, fetch_all


class Served:
    """Files served over HTTP on 127.0.0.1, with a count of the requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = 0
        served = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:  # noqa: N802
                served.requests += 1
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "www"
    root.mkdir()
    s = Served(root)
    thread = threading.Thread(target=s.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_http_uri_lands_under_output_file_and_executable_sets_the_mode(
    served: Served, tmp_path: Path
) -> None:
    (served.root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (served.root / "data.txt").write_text("payload")
    sandbox = tmp_path / "sandbox"
    fetch_all(
        [
            Uri(f"{served.url}/run.sh", executable=True),
            Uri(f"{served.url}/data.txt", output_file="conf/settings.txt"),
        ],
        sandbox,
        tmp_path / "work",
    )
    assert (sandbox / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(sandbox / "run.sh", os.X_OK)
    assert (sandbox / "conf" / "settings.txt").read_text() == "payload"
    assert not os.access(sandbox / "conf" / "settings.txt", os.X_OK)


def test_file_urls_and_absolute_paths_are_copied(tmp_path: Path) -> None:
    source = tmp_path / "a file.txt"
    source.write_text("local")
    sandbox = tmp_path / "sandbox"
    fetch_all(
        [Uri(f"file://{tmp_path}/a%20file.txt"), Uri(str(source), output_file="copy.txt")],
        sandbox,
        tmp_path,
    )
    assert (sandbox / "a file.txt").read_text() == "local"
    assert (sandbox / "copy.txt").read_text() == "local"


def test_tar_and_zip_archives_are_extracted_into_the_sandbox(
    served: Served, tmp_path: Path
) -> None:
    (served.root / "app.tgz").write_bytes(tar_gz({"app/main.py": b"print(1)"}))
    (served.root / "lib.zip").write_bytes(zip_bytes({"lib/util.py": b"X = 2"}))
    (served.root / "raw.tgz").write_bytes(tar_gz({"kept.txt": b"k"}))
    sandbox = tmp_path / "sandbox"
    fetch_all(
        [
            Uri(f"{served.url}/app.tgz"),
            Uri(f"{served.url}/lib.zip", extract=True),
            Uri(f"{served.url}/raw.tgz", extract=False),
        ],
        sandbox,
        tmp_path,
    )
    assert (sandbox / "app" / "main.py").read_bytes() == b"print(1)"
    assert (sandbox / "lib" / "util.py").read_bytes() == b"X = 2"
    assert (sandbox / "app.tgz").exists()  # the archive stays, as Mesos leaves it
    assert not (sandbox / "kept.txt").exists()


@pytest.mark.parametrize(
    ("name", "archive"),
    [
        ("evil.tar.gz", tar_gz({"../escaped.txt": b"x"})),
        ("evil.tgz", tar_gz({"/tmp/absolute-escape.txt": b"x"})),
        ("evil.zip", zip_bytes({"../escaped.txt": b"x"})),
    ],
)
def test_archive_members_escaping_the_sandbox_are_refused(
    tmp_path: Path, name: str, archive: bytes
) -> None:
    (tmp_path / name).write_bytes(archive)
    sandbox = tmp_path / "deep" / "sandbox"
    with pytest.raises(FetchError, match=f"Failed to fetch '{tmp_path / name}'.*escapes"):
        fetch_all([Uri(str(tmp_path / name))], sandbox, tmp_path)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()


def test_a_tar_symlink_out_of_the_sandbox_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(FetchError, match="escapes"):
        fetch_all([Uri(str(tmp_path / "link.tar"))], tmp_path / "sandbox", tmp_path)


def test_cached_uris_are_downloaded_once(served: Served, tmp_path: Path) -> None:
    (served.root / "big.bin").write_bytes(b"1" * 100_000)
    uri = Uri(f"{served.url}/big.bin", cache=True)
    fetch_all([uri], tmp_path / "s1", tmp_path / "work")
    (served.root / "big.bin").unlink()  # a second download would now fail
    fetch_all([uri], tmp_path / "s2", tmp_path / "work")
    assert (tmp_path / "s2" / "big.bin").read_bytes() == b"1" * 100_000
    assert served.requests == 1
    assert len(list((tmp_path / "work" / fetcher.CACHE_DIR).iterdir())) == 1
    with pytest.raises(FetchError, match="HTTP 404"):  # uncached: fetched again
        fetch_all([Uri(f"{served.url}/big.bin")], tmp_path / "s3", tmp_path / "work")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://127.0.0.1:{port}/missing.txt", "HTTP 404"),
        ("relative/file.txt", "relative path"),
        ("file:///nonexistent/file.txt", "not a file"),
        ("hdfs://namenode/file.txt", "not hdfs"),
        ("http://127.0.0.1:{port}/", "no file name"),
    ],
)
def test_failures_name_the_uri(served: Served, tmp_path: Path, value: str, why: str) -> None:
    value = value.format(port=served.server.server_address[1])
    with pytest.raises(FetchError, match=why) as e:
        fetch_all([Uri(value)], tmp_path / "sandbox", tmp_path)
    assert e.value.uri == value
    assert str(e.value).startswith(f"Failed to fetch '{value}': ")


@pytest.mark.parametrize(
    ("uris", "message"),
    [
        ("x", "CommandInfo.uris must be a list"),
        ([{"executable": True}], "CommandInfo.uris[0].value is required"),
        ([{"value": "/a"}, {"value": "/b", "extract": "yes"}], "uris[1].extract must be a boolean"),
        ([{"value": "/a", "output_file": "../x"}], "uris[0].output_file must be a relative"),
        ([{"value": "/a", "output_file": "/etc/x"}], "uris[0].output_file must be a relative"),
    ],
)
def test_malformed_uris_are_named(uris: object, message: str) -> None:
    problem = fetcher.problem({"value": "true", "uris": uris})
    assert problem is not None and message in problem


def test_uris_parse_with_mesos_defaults() -> None:
    command = {"value": "x", "uris": [{"value": "/a"}, {"value": "/b", "output_file": "c"}]}
    assert fetcher.problem(command) is None
    assert fetcher.parse(command) == [Uri("/a", extract=True), Uri("/b", output_file="c")]


@pytest.mark.parametrize(
    ("info", "field"),
    [
        ({"type": "DOCKER", "docker": {"image": "nginx"}}, "TaskInfo.container.type DOCKER"),
        ({"type": "MESOS", "volumes": [{"container_path": "/d"}]}, "TaskInfo.container.volumes"),
        ({"type": "MESOS", "mesos": {"image": {"type": "DOCKER"}}}, "TaskInfo.container.mesos"),
        ("MESOS", "TaskInfo.container must be a ContainerInfo"),
    ],
)
def test_container_settings_mesoslite_cannot_honour_are_named(info: object, field: str) -> None:
    problem = container.problem(info, "TaskInfo.container")
    assert problem is not None and problem.startswith(field)


def test_a_plain_mesos_container_is_accepted() -> None:
    assert container.problem({"type": "MESOS"}, "TaskInfo.container") is None
    assert container.problem({"type": "MESOS", "volumes": []}, "TaskInfo.container") is None
    assert container.problem(None, "TaskInfo.container") is None
