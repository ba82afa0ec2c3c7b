"""Issue 30: `deepfaune review` against what a local attacker, a careless click or a second window does: the link
works once, a slow or silent client holds only its own connection, bodies have a size and depth limit, the
page says why a write back failed, a deleted store refuses labels, a second review of a source is refused;
and what it takes from the run (its record's options, blurred people, the stand-in banner)."""
from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import socket
import time

import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.cli import build_parser
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.review.cli import run_review_command
from deepfaune_plugin.review.server import ReviewApp, ReviewServer
from deepfaune_plugin.review.session import ReviewError
from deepfaune_plugin.testing import run_cli
from deepfaune_plugin.types import PERSON, Detection
from reviewkit import make_season, table
from test_review_app import TOKEN, Client, open_session
from test_review_browser import CHROMIUM, Review


@pytest.fixture
def season(tmp_path):
    return make_season(tmp_path)


@pytest.fixture
def serve(season, tmp_path):
    """serve(export=None, timeout=10) -> (Client, server, session); everything stopped afterwards."""
    started = []

    def start(export=None, timeout=10.0):
        session = open_session(season, tmp_path)
        server = ReviewServer(ReviewApp(session, TOKEN, export), timeout=timeout).start()
        started.append((server, session))
        return Client(server), server, session

    yield start
    for server, session in started:
        server.stop()
        session.store.close()


def _cookie(client):
    return {"Cookie": f"{client.cookie}={TOKEN}"}


def test_the_printed_link_holds_no_token_and_opens_the_review_once(serve):
    """30.3: the link reaches the browser's command line (`ps`): it must be useless once used."""
    client, server, _ = serve()
    assert TOKEN not in server.url
    path = server.url.split(str(client.port), 1)[1]
    status, headers, body = client.request("GET", path)
    assert status == 200 and f"{client.cookie}={TOKEN}" in headers["Set-Cookie"]
    status, _, body = client.request("GET", path)  # read from `ps` after the browser used it
    assert status == 403 and b"each link opens it once" in body
    code = path.split("c=", 1)[1]
    assert client.request("GET", f"/api/summary?c={code}")[0] == 403
    assert client.request("GET", f"/api/summary?t={TOKEN}")[0] == 403
    assert client.request("GET", "/api/summary", headers=_cookie(client))[0] == 200  # the browser goes on


def test_a_slowloris_holds_only_its_own_connections(serve):
    """30.4: idle and half-sent connections (no token needed) must not freeze the review for its person."""
    client, server, _ = serve(timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", client.port), timeout=5) for _ in range(4)]
    slow = [socket.create_connection(("127.0.0.1", client.port), timeout=5) for _ in range(16)]
    try:
        for s in slow:
            s.sendall(b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        started = time.monotonic()
        status, _, body = client.request("GET", "/api/summary", headers=_cookie(client))
        assert status == 200 and json.loads(body)["queue"] == 4
        assert time.monotonic() - started < 1.0  # answered at once, not after the others timed out
        for s in idle + slow:  # each is closed by the server after its read timeout (1 s here)
            assert s.recv(1024) == b""
    finally:
        for s in idle + slow:
            s.close()


def test_a_deep_or_huge_body_is_refused_with_a_message(serve):
    """30.18: a 200,000-deep JSON body was a RecursionError (a bare 500)."""
    client, _, session = serve()
    post = {"X-Review-Token": TOKEN, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    deep = b"[" * 200_000 + b"]" * 200_000
    conn.request("POST", "/api/label", body=deep, headers={**post, "Host": f"127.0.0.1:{client.port}"})
    res = conn.getresponse()
    assert res.status == 400 and b"JSON nested over 8 levels: refused" in res.read()
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    conn.request("POST", "/api/label", body=b" " * (2 << 20), headers={**post, "Host": f"127.0.0.1:{client.port}"})
    res = conn.getresponse()
    assert res.status == 413 and "over 1048576 bytes" in json.loads(res.read())["error"]
    conn.close()
    # a bracket inside a string is no nesting
    status, _, body = client.request("POST", "/api/label", {"files": ["[[[[[[[[[["], "key": "fox"}, post)
    assert status == 400 and "not a file of this review: [[[[[[[[[[" in json.loads(body)["error"]


def _refused(argv, registry) -> str:
    """The one-line refusal of `deepfaune review argv`; a review that starts serving fails the test at once
    (never a test that waits forever)."""
    args = build_parser(registry).parse_args([str(a) for a in argv])
    args.argv = [str(a) for a in argv]

    def ready(server):
        raise AssertionError(f"the review started serving on port {server.app.port}")

    with pytest.raises(DeepfauneError) as err:
        run_review_command(args, registry, ready=ready)
    return str(err.value)


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_port_outside_1_to_65535_is_refused(season, port):
    """30.18: -1 was a traceback, 70000 served silently on 4464."""
    src, registry, store, _ = season
    assert _refused(["review", src, "--backend", "logits", "--store", store, "--port", port, "--no-browser"],
                    registry) == f"--port {port}: give a port from 1 to 65535, or 0 for a free one"


def test_a_failed_write_back_says_why_in_the_page(serve):
    """30.18: Timelapse holding the .ddb gave a bare 500 in the page; the message was only in the terminal."""
    message = "/data/x.ddb: the database stayed locked for 30 s (database is locked); is Timelapse saving to it?"

    def export():
        raise DeepfauneError(message)

    client, _, _ = serve(export)
    status, _, body = client.request("POST", "/api/export", {}, {"X-Review-Token": TOKEN})
    assert status == 409 and json.loads(body)["error"] == f"write back failed: {message}"


def test_a_label_is_refused_once_the_store_is_deleted(season, tmp_path):
    """30.13: `deepfaune store clear` under an open review: labels went into the deleted file, all lost."""
    session = open_session(season, tmp_path)
    try:
        session.set_labels(["b/IMG_0001.JPG"], "wolf")
        os.remove(season[2])
        with pytest.raises(ReviewError, match="was removed or replaced while this review was open: the label is "
                                              "not kept"):
            session.set_labels(["c/IMG_0001.JPG"], "fox")
    finally:
        session.store.close()


def test_a_second_review_of_a_source_is_refused(season):
    """30.16: two reviews of one source each showed their own labels, and the store kept the last."""
    src, registry, store, _ = season
    argv = ["review", str(src), "--backend", "logits", "--store", str(store), "--no-browser"]
    first = Review(argv, registry)
    try:
        assert f"{src} is open in another `deepfaune review`; close it first" in _refused(argv, registry)
    finally:
        first.stop()
    again = Review(argv, registry)  # closed: the next one opens
    again.stop()


def test_review_export_and_evaluate_take_the_runs_options_from_its_record(season, tmp_path):
    """30.8: the run was `--backend logits --lang en`; `review --export` without them wrote French (and with
    another host's options, nothing); an option given wins."""
    src, registry, store, backend = season
    session = open_session(season, tmp_path)
    session.set_labels(["b/IMG_0001.JPG"], "wild boar")
    session.store.close()
    ran = run_cli(["review", src, "--export", "--store", store], registry)
    assert ran.code == 0, ran.stderr
    assert "lang=en" in ran.stderr and "backend=logits" in ran.stderr
    assert table(src)["b/IMG_0001.JPG"]["prediction"] == "wild boar"
    ran = run_cli(["review", src, "--export", "--store", store, "--lang", "fr"], registry)
    assert ran.code == 0 and table(src)["b/IMG_0001.JPG"]["prediction"] == "sanglier"
    ran = run_cli(["evaluate", src, "--store", store, "--output", tmp_path / "evaluation"], registry)
    assert ran.code == 0, ran.stderr
    assert backend.opened == 1


def test_a_timelapse_export_takes_the_runs_write_ddb_and_field_or_says_what_to_add(tmp_path):
    """30.8: `review --export` on Timelapse without repeating the run's `--write-ddb --field Species` wrote none
    of the labels given, said nothing, and switched the language from en to fr."""
    from test_review_writeback import field_by_file, label, timelapse_registry, timelapse_set
    from timelapse_build import Control

    root = tmp_path / "set"
    ddb = timelapse_set(root, None, [Control("Species", "FixedChoice", choices=("fox", "red deer", "empty"))])
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    ran = run_cli(["run", root, "--backend", "fake", "--store", store, "--lang", "en", "--write-ddb", "--field",
                   "Species", "-q", "--no-report"], registry)
    assert ran.code == 0, ran.stderr
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    ran = run_cli(["review", root, "--export", "--store", store], registry)
    assert ran.code == 0, ran.stderr
    assert "write_ddb=True" in ran.stderr and "field=Species" in ran.stderr and "lang=en" in ran.stderr
    assert field_by_file(ddb, "Species")["fox_2.jpg"] == "red deer"

    plain = tmp_path / "plain"  # a run that never wrote the .ddb: its export would write none of the labels
    timelapse_set(plain, None, [Control("Species", "FixedChoice", choices=("fox", "red deer", "empty"))])
    assert run_cli(["run", plain, "--backend", "fake", "--store", store, "-q", "--no-report"], registry).code == 0
    label(store, plain, {"cam1/fox_2.jpg": "red deer"})
    ran = run_cli(["review", plain, "--export", "--store", store], registry)
    assert ran.code == 1 and (f"write back to {plain}: Timelapse shows a label only once it is in the .ddb: add "
                              "--write-ddb (and --field NAME to put the labels into a data field)") in ran.stderr


def test_people_are_blurred_in_the_review_when_asked(season, tmp_path):
    """30.20: --blur-humans was ignored: /large and /thumb showed the person."""
    rng = np.random.default_rng(1)
    noisy = tmp_path / "person.jpg"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(noisy, quality=95)

    def large(blur: bool) -> np.ndarray:
        session = open_session(season, tmp_path, blur_humans=blur)
        rel = "c/IMG_0001.JPG"
        session.items[rel] = dataclasses.replace(session.items[rel], path=noisy)
        raw = session.raws[rel]
        session.raws[rel] = dataclasses.replace(raw, width=160, height=120, selected=None,
                                                detections=[Detection((0.0, 0.0, 160.0, 120.0), 0.9, PERSON)])
        from deepfaune_plugin.review.session import file_id
        try:
            return np.asarray(Image.open(session.thumbnail(file_id(rel), large=True)).convert("L"), dtype=float)
        finally:
            session.store.close()

    sharp, blurred = large(False), large(True)
    assert sharp.std() > 40 and blurred.std() < 10  # the person's box is smoothed away


def test_stand_in_results_are_marked_in_the_review(season, tmp_path, serve):
    """30.9: a review of stand-in models' outputs looked like a real one."""
    from deepfaune_plugin.pipeline import resolve_host
    from deepfaune_plugin.api import RunSettings
    from deepfaune_plugin.review.session import ReviewSession
    from deepfaune_plugin.store import ResultStore

    src, registry, store, backend = season
    real = backend.describe

    def standin(settings):  # what the deepfaune backend says of models with random weights
        return dataclasses.replace(real(settings), info={"standin": True})

    backend.describe = standin
    marked = ReviewSession.open(src, resolve_host(registry, "auto", src), backend, RunSettings(backend="logits"),
                                ResultStore(store, shared=True), {"output": None}, tmp_path / "t", "Ana",
                                log=lambda msg: None)
    assert marked.summary()["standin"] is True
    marked.store.close()
    backend.describe = real
    client, server, session = serve()
    status, _, body = client.request("GET", "/api/summary", headers=_cookie(client))
    assert json.loads(body)["standin"] is False
    session.standin = True
    status, _, body = client.request("GET", "/api/summary", headers=_cookie(client))
    assert json.loads(body)["standin"] is True
    path = server.url.split(str(client.port), 1)[1]
    page = client.request("GET", path)[2].decode()
    assert 'id="standin"' in page and "STAND-IN MODELS" in page and "every label and score is meaningless" in page


def test_the_report_of_a_write_back_evaluates_the_labels_it_writes(season, tmp_path):
    """30.10: the page Write back made showed the evaluation from before the labels just written."""
    from test_report_season import page_data

    src, registry, store, backend = season
    session = open_session(season, tmp_path)
    session.set_labels(["b/IMG_0001.JPG"], "wolf")  # DeepFaune: fox at 0.72, undefined at 0.8
    session.set_labels(["c/IMG_0001.JPG"], "fox")  # fox at 0.85: right
    session.store.close()
    # write back is this run (the season's run had --no-report; the page is asked for here)
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--lang", "en"], registry)
    assert ran.code == 0, ran.stderr
    evaluation = page_data(src / "deepfaune-report.html")["evaluation"]
    sweep = {(e["level"], e["t"]): e for e in evaluation["sweep"]}
    assert evaluation["labelled"] == 2
    assert (sweep[("image", 0.8)]["covered"], sweep[("image", 0.8)]["correct"]) == (1, 1)
    assert (sweep[("image", 0.7)]["covered"], sweep[("image", 0.7)]["correct"]) == (2, 1)


def test_the_browser_gets_the_link_from_a_file_only_its_user_can_read():
    """30.3: a browser started with the link on its command line shows it to every local user (`ps`)."""
    import stat

    from deepfaune_plugin.review.cli import _launcher

    url = "http://127.0.0.1:5000/?c=abc"
    path = _launcher(url)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and url in path.read_text(encoding="utf-8")
    finally:
        path.unlink()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_page_shows_the_stand_in_banner_and_why_a_write_back_or_a_label_failed(serve, season, tmp_path):
    """30.9, 30.18, 30.13 in the browser: the banner is shown, the write back's own message (not a bare 500),
    and a label refused once the store is gone."""
    from cdp import Browser

    message = "/data/x.ddb: the database stayed locked for 30 s (database is locked); is Timelapse saving to it?"

    def export():
        raise DeepfauneError(message)

    client, server, session = serve(export)
    session.standin = True
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.send("Page.navigate", url=server.url)
        browser.wait_for("document.body.dataset.loaded === '1'")
        assert browser.evaluate("document.getElementById('standin').hidden") is False
        assert "every label and score is meaningless" in browser.evaluate(
            "document.getElementById('standin').textContent")
        browser.key("W")
        browser.wait_for("document.getElementById('status').className === 'error'")
        assert browser.evaluate("document.getElementById('status').textContent") == f"write back failed: {message}"
        os.remove(season[2])  # `deepfaune store clear` while the page is open
        browser.key("e")
        browser.wait_for("document.getElementById('status').textContent.includes('was removed or replaced')")
        assert browser.evaluate("document.getElementById('status').className") == "error"
    finally:
        browser.close()


def test_a_video_is_served_by_id_with_ranges_and_never_through_a_link(serve, monkeypatch, tmp_path):
    """33.6: the enlarged view seeks in a clip: its file is served by id with Range requests (206); a link put
    in the file's place afterwards is not followed. (send_file with an open handle ignored Range: every request
    got the whole file, 200.)"""
    client, _, session = serve()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(bytes(range(256)) * 40)
    monkeypatch.setattr(session, "media", lambda ident: clip if ident == "v1" else None)
    status, headers, body = client.request("GET", "/media/v1", headers={**_cookie(client), "Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/10240", bytes(range(10, 20)))
    assert client.request("GET", "/media/v2", headers=_cookie(client))[0] == 404
    secret = tmp_path / "secret.txt"
    secret.write_text("not a video")
    clip.unlink()
    clip.symlink_to(secret)
    assert client.request("GET", "/media/v1", headers=_cookie(client))[0] == 404


def test_a_record_in_the_source_never_chooses_outputs_stores_or_the_network(season, tmp_path):
    """30.8's rule has a limit: the run record lies in the source, a folder anyone may have sent. A record naming
    an output elsewhere, another store, a Dask scheduler or `--fetch-remote --fetch-allow-private` made a later
    `review --export` write there, read there or fetch from private addresses unasked; only what decides labels
    (settings, and host options the host marks `from_record`) is taken."""
    import json

    from deepfaune_plugin.recorded import run_options

    src, registry, store, _ = season
    record = next(src.glob("*run.json"))
    data = json.loads(record.read_text())
    elsewhere = tmp_path / "elsewhere"
    data["command"] = ["deepfaune", "run", str(src), "--backend", "logits", "--lang", "en", "--output", str(elsewhere / "t.csv"),
                       "--store", str(elsewhere / "s.sqlite"), "--scheduler", "tcp://203.0.113.9:8786",
                       "--models-dir", str(elsewhere), "--fetch-remote", "--fetch-allow-private",
                       "--media-cache", str(elsewhere)]
    record.write_text(json.dumps(data))
    _, taken = run_options(src, None, registry)
    assert sorted(taken) == ["backend", "lang"]
    ran = run_cli(["review", src, "--export", "--store", store], registry)
    assert ran.code == 0, ran.stderr
    assert "lang=en" in ran.stderr and "elsewhere" not in ran.stderr and "fetch" not in ran.stderr
    assert not elsewhere.exists()
