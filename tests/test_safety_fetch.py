"""`--fetch-remote` against hostile packages and servers (issue 15 items 2, 9, 12; issue 16 item 6).

The server is local (no network); each route is a small function, so a lying or trickling server is a
few lines. Runs go through `deepfaune run` (the CLI) with the fake backend.
"""
from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from camtrapdp_helpers import make_package, read_rows, registry, stamp
from deepfaune_plugin.cli import main
from deepfaune_plugin.hooks.camtrapdp.fetch import FetchLimits, cache_name, fetch_all
from deepfaune_plugin.hooks.camtrapdp.package import MediaRow
from imagegen import make_jpeg


class Server:
    """routes: path -> handler(request) writing the whole answer; records every path asked."""

    def __init__(self):
        self.routes: dict = {}
        self.asked: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.asked.append(self.path)
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    route = server.routes.get(self.path)
                    if route is None:
                        self.send_error(404)
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def send(body: bytes, length: int | None = None, pause: float = 0.0, step: int = 0):
    """A route: `body`, announced as `length` bytes (None: no Content-Length), in steps of `step` bytes."""
    def route(req):
        req.send_response(200)
        req.send_header("Content-Type", "image/jpeg")
        if length is not None:
            req.send_header("Content-Length", str(length))
        req.end_headers()
        pieces = [body[i:i + step] for i in range(0, len(body), step)] if step else [body]
        for n, piece in enumerate(pieces):
            if pause and n:
                time.sleep(pause)
            req.wfile.write(piece)
            req.wfile.flush()
        req.close_connection = True

    return route


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def remote_row(media_id: str, url: str, file_name: str = "", seconds: int = 3000) -> list[str]:
    return [media_id, "dep2", "", stamp(seconds), url, "true", file_name, "image/jpeg", "", "", ""]


def run(package: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = main(["run", str(package), "--backend", "fake", "--no-store", "--no-report", "-q", "--lang", "en",
               "--fetch-remote", "--fetch-allow-private", *extra],  # the test server is on 127.0.0.1
              registry=registry(lambda item: "fox"))
    return rc, capsys.readouterr().err


def jpeg_bytes(tmp: Path, seed: int = 0) -> bytes:
    return make_jpeg(tmp / f"src{seed}.jpg", width=160, height=120, seed=seed).read_bytes()


def ours(package: Path) -> set[str]:
    return {r["mediaID"] for r in read_rows(package / "observations.csv") if r["classifiedBy"].startswith("DeepFaune")}


# ---------------------------------------------------------------- item 2: nothing lands outside the package

def test_item15_2_cache_link_to_elsewhere_is_refused(tmp_path: Path, server: Server, capsys):
    server.routes["/x.py"] = send(b"import os  # planted\n")
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row("sitecustomize", f"{server.url}/x.py", "sitecustomize.py")])
    site = tmp_path / "site-packages"
    site.mkdir()
    os.symlink(site, package / ".deepfaune_cache")
    before = (package / "observations.csv").read_bytes()
    rc, err = run(package, capsys)
    assert rc == 1 and ".deepfaune_cache is a symbolic link" in err and "nothing was fetched" in err
    assert list(site.iterdir()) == [] and server.asked == []
    assert (package / "observations.csv").read_bytes() == before


def test_item15_2_cached_name_never_takes_a_code_suffix(tmp_path: Path, server: Server, capsys):
    server.routes["/x.py"] = send(jpeg_bytes(tmp_path))
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row("sitecustomize", f"{server.url}/x.py", "sitecustomize.py"),
        remote_row("../../evil", f"{server.url}/x.py", "a.pth", 3100)])
    rc, err = run(package, capsys)
    assert rc == 0, err
    names = sorted(p.name for p in (package / ".deepfaune_cache").iterdir())
    media = [n for n in names if not n.endswith(".source.json")]
    assert media[1] == "sitecustomize.jpg" and media[0].startswith("_.._evil-") and media[0].endswith(".jpg")
    assert {"sitecustomize", "../../evil"} <= ours(package)
    assert cache_name(MediaRow("m", "d", "", "http://h/a.so", "b.exe", "video/mp4")) == "m.mp4"


def test_item15_2_backups_link_to_elsewhere_is_refused(tmp_path: Path, capsys):
    package = make_package(tmp_path / "pkg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, package / ".deepfaune_backups")
    before = (package / "observations.csv").read_bytes()
    rc = main(["run", str(package), "--backend", "fake", "--no-store", "--no-report", "-q"], registry=registry())
    err = capsys.readouterr().err
    assert rc == 1 and ".deepfaune_backups is a symbolic link" in err
    assert list(elsewhere.iterdir()) == [] and (package / "observations.csv").read_bytes() == before


# ---------------------------------------------------------------- item 9: a short file is never cached

def test_item15_9_truncated_download_is_not_cached_and_a_new_url_is_fetched_again(tmp_path: Path, server: Server,
                                                                                  capsys):
    good = jpeg_bytes(tmp_path, 1)
    server.routes["/a.jpg"] = send(good[:1273], length=2547)  # the connection ends half way
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", f"{server.url}/a.jpg")])
    rc, err = run(package, capsys)
    assert f"warning: {server.url}/a.jpg: download failed (truncated: 1273 of the 2547 bytes announced); skipped" in err
    assert "r1" not in ours(package) and not (package / ".deepfaune_cache" / "r1.jpg").exists()
    assert [p.name for p in (package / ".deepfaune_cache").iterdir()] == []  # no part file left either

    server.routes["/a.jpg"] = send(good, length=len(good))
    rc, err = run(package, capsys)
    assert rc == 0 and (package / ".deepfaune_cache" / "r1.jpg").read_bytes() == good and "r1" in ours(package)
    asked = len(server.asked)
    run(package, capsys)
    assert len(server.asked) == asked  # complete and noted: not fetched again

    other = jpeg_bytes(tmp_path, 2)
    server.routes["/b.jpg"] = send(other, length=len(other))
    media = package / "media.csv"
    media.write_text(media.read_text().replace(f"{server.url}/a.jpg", f"{server.url}/b.jpg"))
    run(package, capsys)
    assert server.asked[-1] == "/b.jpg" and (package / ".deepfaune_cache" / "r1.jpg").read_bytes() == other


def test_item15_9_sha256_given_by_the_url_is_checked(tmp_path: Path, server: Server, capsys):
    import hashlib

    body = jpeg_bytes(tmp_path)
    server.routes["/a.jpg"] = send(body)  # no Content-Length: only the hash can tell
    right, wrong = hashlib.sha256(body).hexdigest(), "0" * 64
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row("r1", f"{server.url}/a.jpg#sha256={right}"), remote_row("r2", f"{server.url}/a.jpg#sha256={wrong}",
                                                                           seconds=3100)])
    rc, err = run(package, capsys)
    assert f"sha256 {right} is not the {wrong} its URL gives" in err
    assert "r1" in ours(package) and "r2" not in ours(package)
    assert not (package / ".deepfaune_cache" / "r2.jpg").exists()


# ---------------------------------------------------------------- item 12: deadline, size cap, bounded fetches

def test_item15_12_deadline_size_cap_and_skipped_count(tmp_path: Path, server: Server, capsys):
    body = jpeg_bytes(tmp_path)
    server.routes["/slow.jpg"] = send(body[:40], length=len(body), pause=0.3, step=2)  # 2 bytes every 0.3 s
    server.routes["/endless.jpg"] = send(body[:200] + b"\xff" * 3_000_000, step=1 << 16)  # no Content-Length
    server.routes["/huge.jpg"] = send(b"", length=50_000_000)
    server.routes["/ok.jpg"] = send(body, length=len(body))
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row("slow", f"{server.url}/slow.jpg"), remote_row("endless", f"{server.url}/endless.jpg", seconds=3100),
        remote_row("huge", f"{server.url}/huge.jpg", seconds=3200), remote_row("ok", f"{server.url}/ok.jpg",
                                                                               seconds=3300)])
    rc, err = run(package, capsys, "--fetch-timeout", "1", "--fetch-max-mb", "1")
    assert "slow.jpg: download failed (not complete after the 1 s deadline (--fetch-timeout;" in err
    assert "endless.jpg: download failed (more than the 1 MB limit (--fetch-max-mb); stopped)" in err
    assert "huge.jpg: download failed (50.0 MB announced, over the 1 MB limit (--fetch-max-mb))" in err
    assert "remote media: 1 of 4 ready (0 already in the cache), 3 skipped" in err
    assert ours(package) & {"slow", "endless", "huge", "ok"} == {"ok"}
    assert sorted(p.name for p in (package / ".deepfaune_cache").iterdir()) == ["ok.jpg", "ok.jpg.source.json"]


def test_item15_12_fetches_run_in_parallel_within_the_bound(tmp_path: Path, server: Server):
    from deepfaune_plugin.hooks.camtrapdp.fetch import MediaCache, opener_for

    body = jpeg_bytes(tmp_path)
    for k in range(8):
        server.routes[f"/{k}.jpg"] = send(body, length=len(body), pause=0.05, step=len(body) // 4)
    rows = [MediaRow(f"m{k}", "d", stamp(k), f"{server.url}/{k}.jpg", "", "image/jpeg") for k in range(8)]
    lock, now, most = threading.Lock(), [0], [0]

    class Counted:  # a response counted from its request until it is closed
        def __init__(self, response):
            self.response, self.headers, self.read = response, response.headers, response.read

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.response.close()
            with lock:
                now[0] -= 1

    def opener(url, timeout):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        return Counted(opener_for(FetchLimits(allow_private=True))(url, timeout))

    cache = MediaCache.open(tmp_path, None)
    try:
        done = fetch_all(rows, cache, FetchLimits(workers=3), opener)
    finally:
        cache.close()
    assert [row.media_id for row, _ in done.files] == [f"m{k}" for k in range(8)]  # in the rows' order
    assert 1 <= most[0] <= 3 and len(server.asked) == 8


def test_item15_12_bad_limit_values_are_refused(tmp_path: Path, capsys):
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", "http://127.0.0.1:9/a.jpg")])
    for option, value in (("--fetch-timeout", "inf"), ("--fetch-max-mb", "-1"), ("--fetch-workers", "two")):
        rc, err = run(package, capsys, option, value)
        assert rc == 1 and f"{option} '{value}': a positive number is needed" in err


# ---------------------------------------------------------------- issue 16 item 6: offline fails fast, said once

def test_item16_6_offline_fetch_fails_fast_and_says_so_once(tmp_path: Path, capsys):
    with socket.socket() as probe:  # a port nobody listens on: connections are refused, as when offline
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"127.0.0.1:{port}"
    rows = [remote_row(f"r{k}", f"http://{host}/{k}.jpg", seconds=3000 + 10 * k) for k in range(40)]
    package = make_package(tmp_path / "pkg", extra_media_rows=rows)
    rc, err = run(package, capsys, "--fetch-workers", "2")
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    said = [line for line in lines if "cannot be reached" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: {host}: 40 remote media not fetched: {host} cannot be "
                                                 "reached (")
    assert not [line for line in lines if "download failed" in line]
    assert "remote media: 0 of 40 ready (0 already in the cache), 40 skipped" in err
    assert not {f"r{k}" for k in range(40)} & ours(package)


def test_item15_2_thumbnail_folder_link_to_elsewhere_is_refused(tmp_path: Path, capsys):
    """The rule applied to the other folder we write into a source: the review page's thumbnails."""
    src = tmp_path / "season"
    make_jpeg(src / "fox_1.jpg", width=160, height=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, src / ".deepfaune-thumbs")
    from fakes import registry_with_fake

    rc = main(["run", str(src), "--backend", "fake", "--no-store", "-q"], registry=registry_with_fake())
    err = capsys.readouterr().err
    assert rc == 0 and "no review page" in err and ".deepfaune-thumbs is a symbolic link" in err
    assert list(elsewhere.iterdir()) == [] and (src / "deepfaune.csv").is_file()


def test_item15_2_timelapse_backups_link_to_elsewhere_is_refused(tmp_path: Path):
    """The rule applied to Timelapse's Backups/ folder, where the .ddb is copied before an import."""
    from deepfaune_plugin.hooks.timelapse import recognitions as ti
    from timelapse_build import Control, create_ddb, write_template
    from deepfaune_plugin.paths import UnsafeFolderError

    tdb = write_template(tmp_path / "t.tdb", [Control("Species", "Note")])
    ddb = create_ddb(tdb, tmp_path / "TimelapseData.ddb", [("a.jpg", None)])
    before = ddb.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "Backups")
    with pytest.raises(UnsafeFolderError, match="Backups is a symbolic link"):
        ti.write_ddb(ddb, {"info": {}, "detection_categories": {"1": "animal"}, "images": []})
    assert list(elsewhere.iterdir()) == [] and ddb.read_bytes() == before


def test_item16_6_what_counts_as_a_server_out_of_reach():
    import urllib.error

    from deepfaune_plugin.hooks.camtrapdp.fetch import _unreachable

    assert _unreachable(urllib.error.URLError(socket.gaierror(-2, "Name or service not known")))
    assert _unreachable(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert _unreachable(urllib.error.URLError(TimeoutError("timed out")))  # no answer to connect: offline
    assert not _unreachable(TimeoutError("timed out"))  # a read that timed out: that file only
    assert not _unreachable(urllib.error.HTTPError("http://h/x", 503, "busy", {}, None))
