"""Resumable downloads against a local HTTP server (127.0.0.1) that honours Range and can misbehave."""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
from pathlib import Path

import pytest

from deepfaune_plugin.models.download import ByteProgress, DownloadError, download, part_path


class FileServer:
    """Serves files from a folder with HTTP Range support; `drop_once[name] = n` cuts the first transfer after n bytes.

    `lie_size[name] = n` announces n bytes (and sends n bytes: the file padded or cut), like a
    server holding a different file of the same name.
    """

    def __init__(self, root: Path):
        self.root = root
        self.drop_once: dict[str, int] = {}
        self.lie_size: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if name in server.lie_size:
                    n = server.lie_size[name]
                    data = (data + b"\0" * n)[:n]
                start = 0
                m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if m:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.drop_once.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the client sees the connection drop mid-file
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    payload = bytes(range(256)) * 4000 + b"tail"  # 1,024,004 bytes: crosses the 1 MiB chunk size
    (root / "weights.pt").write_bytes(payload)
    with FileServer(root) as server:
        yield server, payload


def _no_sleep(_seconds: float) -> None:
    pass


def test_download_whole_file_and_atomic_rename(served, tmp_path):
    server, payload = served
    dest = tmp_path / "dl" / "weights.pt"
    got = download(f"{server.url}/weights.pt", dest, expected_size=len(payload), progress=False)
    assert got == dest and dest.read_bytes() == payload
    assert not part_path(dest).exists()
    assert server.requests == [("weights.pt", None)]


def test_interrupted_download_resumes_with_a_range_request(served, tmp_path):
    server, payload = served
    server.drop_once["weights.pt"] = 300_000
    dest = tmp_path / "weights.pt"
    download(f"{server.url}/weights.pt", dest, expected_size=len(payload), progress=False, sleep=_no_sleep)
    assert dest.read_bytes() == payload
    assert [r for _, r in server.requests] == [None, "bytes=300000-"]


def test_part_file_left_by_an_earlier_run_is_resumed(served, tmp_path):
    server, payload = served
    dest = tmp_path / "weights.pt"
    part_path(dest).write_bytes(payload[:123_456])
    download(f"{server.url}/weights.pt", dest, progress=False)
    assert dest.read_bytes() == payload
    assert server.requests == [("weights.pt", "bytes=123456-")]


def test_complete_part_file_is_finished_without_a_transfer(served, tmp_path):
    server, payload = served
    dest = tmp_path / "weights.pt"
    part_path(dest).write_bytes(payload)
    download(f"{server.url}/weights.pt", dest, expected_size=len(payload), progress=False)
    assert dest.read_bytes() == payload and server.requests == []


def test_a_different_size_is_refused_before_keeping_any_byte(served, tmp_path):
    server, payload = served
    server.lie_size["weights.pt"] = len(payload) - 10
    dest = tmp_path / "weights.pt"
    with pytest.raises(DownloadError, match=f"is {len(payload) - 10} bytes, the model card expects {len(payload)}"):
        download(f"{server.url}/weights.pt", dest, expected_size=len(payload), progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_sha256_mismatch_removes_the_bytes(served, tmp_path):
    server, payload = served
    dest = tmp_path / "weights.pt"
    with pytest.raises(DownloadError, match="does not match the expected"):
        download(f"{server.url}/weights.pt", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not part_path(dest).exists()
    good = hashlib.sha256(payload).hexdigest()
    assert download(f"{server.url}/weights.pt", dest, sha256=good, progress=False).read_bytes() == payload


def test_missing_file_is_a_clear_error(served, tmp_path):
    server, _ = served
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/nope.pt", tmp_path / "nope.pt", progress=False)
    assert not (tmp_path / "nope.pt.part").exists()


def test_unreachable_server_gives_up_after_the_retries(tmp_path):
    sleeps = []
    with pytest.raises(DownloadError, match="after 2 retries"):
        download("http://127.0.0.1:9/x.pt", tmp_path / "x.pt", retries=2, timeout=2, progress=False,
                 sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]


def test_progress_line_shows_megabytes_rate_and_eta():
    stream = io.StringIO()
    bar = ByteProgress("weights.pt", total=10_000_000, stream=stream, every=0.0)
    bar.update(2_500_000)
    line = stream.getvalue().strip()
    assert line.startswith("weights.pt  2.5/10.0 MB  ") and "MB/s" in line and "ETA" in line


def test_item15_9_a_new_url_is_fetched_again_never_resumed_with_the_old_bytes(served, tmp_path):
    server, payload = served
    other = payload[::-1]
    (server.root / "mirror.pt").write_bytes(other)
    dest = tmp_path / "weights.pt"
    download(f"{server.url}/weights.pt", dest, progress=False)
    assert dest.read_bytes() == payload
    download(f"{server.url}/weights.pt", dest, progress=False)
    assert len(server.requests) == 1  # same URL, complete: kept
    download(f"{server.url}/mirror.pt", dest, progress=False)
    assert dest.read_bytes() == other and server.requests[-1] == ("mirror.pt", None)

    part_path(dest).write_bytes(other[:5000])  # a part of mirror.pt, then the URL changes back
    download(f"{server.url}/weights.pt", dest, progress=False)
    assert dest.read_bytes() == payload and server.requests[-1] == ("weights.pt", None)  # from the start

