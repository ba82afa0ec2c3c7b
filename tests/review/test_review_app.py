"""Issue 18 item 1: `deepfaune review`'s server: only the printed link opens it, labels are kept in the result
store as they are given (and survive a restart), and a later run or `--export` writes them, never DeepFaune's."""
from __future__ import annotations

import csv
import http.client
import json

import pytest

from deepfaune_plugin.pipeline import resolve_host
from deepfaune_plugin.review.server import ReviewApp, ReviewServer
from deepfaune_plugin.review.session import ReviewError, ReviewSession
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.testing import run_cli
from reviewkit import make_season, table
from deepfaune_plugin.api import RunSettings

TOKEN = "test-token-0123456789"
CODE = "test-code-9876543210"  # the link's one-time code


@pytest.fixture
def season(tmp_path):
    """(source, registry, result store, backend) of `reviewkit.make_season`, run once."""
    return make_season(tmp_path)


def open_session(season, tmp_path, reviewer="Ana", show_all=False, blur_humans=False) -> ReviewSession:
    src, registry, store, backend = season
    host = resolve_host(registry, "auto", src)
    settings = RunSettings(backend="logits", lang="en")
    return ReviewSession.open(src, host, backend, settings, ResultStore(store, shared=True), {"output": None},
                              tmp_path / "thumbs", reviewer, show_all, log=lambda msg: None, blur_humans=blur_humans)


class Client:
    def __init__(self, server: ReviewServer):
        self.port = server.app.port
        self.cookie = server.app.cookie

    def request(self, method, path, body=None, headers=None, host=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Host": host or f"127.0.0.1:{self.port}", **(headers or {})}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, dict(res.getheaders()), data


@pytest.fixture
def served(season, tmp_path):
    session = open_session(season, tmp_path)
    exported = []
    src, registry, store, backend = season

    def export():
        ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "--lang", "en"],
                      registry)
        exported.append(ran)
        return [str(src / "deepfaune.csv")]

    server = ReviewServer(ReviewApp(session, TOKEN, export, code=CODE)).start()
    yield Client(server), session, exported
    server.stop()
    session.store.close()


def test_the_queue_holds_what_needs_a_look_and_why(season, tmp_path):
    session = open_session(season, tmp_path)
    queued = {s.decisions[0].relpath.split("/")[0]: s.reasons for s in (session.sequences[i] for i in session.queue)}
    # a: fox at ~1.0, d: empty: nothing to look at; b: 0.72 < 0.8; c: 0.85 <= 0.8 + 0.1; f: 1980;
    # e: its images say fox and wolf, whose average is under the threshold
    assert queued == {"b": ("undefined",), "c": ("near",), "e": ("undefined", "disagree"), "f": ("date",)}
    assert session.summary()["queue"] == 4 and session.summary()["sequences"] == 6
    assert len(open_session(season, tmp_path, show_all=True).queue) == 6
    session.store.close()


def test_a_request_without_the_token_is_refused(served):
    client, session, _ = served
    status, _, body = client.request("GET", "/api/summary")
    assert status == 403 and b"needs the link" in body
    assert client.request("GET", "/")[0] == 403
    assert client.request("GET", "/?t=wrong-token")[0] == 403
    # another site's page in the same browser: a rebound DNS name fails the Host check, even with the token
    assert client.request("GET", f"/?c={CODE}", host="evil.example:80")[0] == 403
    assert client.request("GET", f"/?t={TOKEN}")[0] == 403  # the token never opens the page from a URL
    # a change needs the header, not only the cookie a browser would attach to a cross-site form
    status, _, _ = client.request("POST", "/api/label", {"files": ["b/IMG_0001.JPG"], "key": "wolf"},
                                  headers={"Cookie": f"{client.cookie}={TOKEN}"})
    assert status == 403
    assert session.store.human_labels(list(session.items.values())) == {}


def test_the_link_opens_the_page_and_sets_a_same_site_cookie(served):
    client, _, _ = served
    status, headers, body = client.request("GET", f"/?c={CODE}")
    assert status == 200 and b"DeepFaune review" in body
    cookie = headers["Set-Cookie"]
    assert client.cookie == f"deepfaune_review_{client.port}"  # one per review: ports share a host's cookies
    assert f"{client.cookie}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "script-src 'self'" in headers["Content-Security-Policy"] and "default-src 'none'" in headers[
        "Content-Security-Policy"]
    status, _, body = client.request("GET", "/api/page/0", headers={"Cookie": f"{client.cookie}={TOKEN}"})
    page = json.loads(body)
    assert status == 200 and page["total"] == 4 and [s["reasons"] for s in page["sequences"]] == [
        ["undefined"], ["near"], ["undefined", "disagree"], ["date"]]
    first = page["sequences"][0]["files"][0]
    status, headers, body = client.request("GET", f"/thumb/{first['id']}.jpg",
                                           headers={"Cookie": f"{client.cookie}={TOKEN}"})
    assert status == 200 and body[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"
    status, _, body = client.request("GET", f"/large/{first['id']}.jpg", headers={"Cookie": f"{client.cookie}={TOKEN}"})
    assert status == 200 and body[:2] == b"\xff\xd8"
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(body)).size == (80, 60)  # the photo's own size: it is under 1600 px
    # a path never travels in a URL: only the ids of this review's files are served
    assert client.request("GET", "/thumb/..%2f..%2fetc%2fpasswd.jpg",
                          headers={"Cookie": f"{client.cookie}={TOKEN}"})[0] == 404


def test_labels_are_kept_as_given_and_follow_the_files_into_a_later_run(served, season, tmp_path):
    client, session, exported = served
    src = season[0]
    post = {"X-Review-Token": TOKEN, "Content-Type": "application/json"}
    status, _, body = client.request("POST", "/api/label", {"files": ["b/IMG_0001.JPG"], "key": "wolf"}, post)
    assert status == 200 and json.loads(body)["changed"] == 1
    status, _, body = client.request("POST", "/api/label", {"files": ["e/IMG_0002.JPG"], "key": "fox"}, post)
    assert status == 200
    status, _, body = client.request("POST", "/api/label", {"files": ["b/IMG_0001.JPG"], "key": "unicorn"}, post)
    assert status == 400 and "no label of model 1.4" in json.loads(body)["error"]
    status, _, body = client.request("POST", "/api/label", {"files": ["../outside.jpg"], "key": "fox"}, post)
    assert status == 400 and "not a file of this review" in json.loads(body)["error"]

    # a restart finds them: they are in the result store, by content
    again = open_session(season, tmp_path)
    labelled = {d.relpath: (d.prediction_key, d.human.reviewer, d.machine.prediction_key)
                for s in again.sequences for d in s.decisions if d.human}
    assert labelled == {"b/IMG_0001.JPG": ("wolf", "Ana", "undefined"), "e/IMG_0002.JPG": ("fox", "Ana", "undefined")}
    again.store.close()

    status, _, body = client.request("POST", "/api/export", {}, post)
    assert status == 200 and json.loads(body)["written"] == [str(src / "deepfaune.csv")]
    assert exported[0].code == 0 and season[3].opened == 1  # written from the store: no model ran
    rows = table(src)
    assert (rows["b/IMG_0001.JPG"]["prediction"], rows["b/IMG_0001.JPG"]["score"]) == ("wolf", "1.0")
    assert rows["e/IMG_0002.JPG"]["predictionbase"] == "fox" and rows["a/IMG_0001.JPG"]["prediction"] == "fox"
    assert rows["c/IMG_0001.JPG"]["prediction"] == "fox"  # nobody changed it: DeepFaune's answer

    # forgetting a label gives DeepFaune's answer back
    status, _, _ = client.request("POST", "/api/label", {"files": ["b/IMG_0001.JPG"], "key": None}, post)
    assert status == 200
    assert session.store.human_labels([session.items["b/IMG_0001.JPG"]]) == {}


def test_a_label_follows_the_file_when_the_season_moves(season, tmp_path):
    src, registry, store, backend = season
    session = open_session(season, tmp_path)
    session.set_labels(["c/IMG_0001.JPG"], "badger")
    session.store.close()
    moved = tmp_path / "moved"
    src.rename(moved)
    ran = run_cli(["run", moved, "--backend", "logits", "--store", store, "-q", "--no-report", "--lang", "fr"],
                  registry)
    assert ran.code == 0 and backend.opened == 1
    assert table(moved)["c/IMG_0001.JPG"]["prediction"] == "blaireau"  # the person's label, in the run's language


def test_review_needs_stored_outputs(season, tmp_path):
    src, registry, store, backend = season
    host = resolve_host(registry, "auto", src)
    with pytest.raises(ReviewError, match="none of its 7 files has stored outputs"):
        ReviewSession.open(src, host, backend, RunSettings(backend="logits", model_version="1.5"),
                           ResultStore(store, shared=True), {"output": None}, tmp_path / "t", "Ana",
                           log=lambda msg: None)


def test_export_from_the_command_line_writes_the_labels_without_a_browser(season, tmp_path):
    src, registry, store, backend = season
    session = open_session(season, tmp_path)
    session.set_labels(["b/IMG_0001.JPG"], "wild boar")
    session.store.close()
    ran = run_cli(["review", src, "--export", "--backend", "logits", "--store", store, "--lang", "en",
                   "--no-report"], registry)
    assert ran.code == 0, ran.stderr
    assert backend.opened == 1 and f"wrote {src / 'deepfaune.csv'}" in ran.stderr
    assert table(src)["b/IMG_0001.JPG"]["prediction"] == "wild boar"


def test_review_refuses_what_it_cannot_do(season, tmp_path):
    src, registry, store, backend = season
    ran = run_cli(["review", src, "--backend", "logits", "--no-store"], registry)
    assert ran.code == 1 and "keeps its labels in the result store: drop --no-store" in ran.stderr
    ran = run_cli(["review", src, "--backend", "logits", "--store", tmp_path / "none.sqlite", "--export"], registry)
    assert ran.code == 1 and "none yet; run `deepfaune run" in ran.stderr
    ran = run_cli(["review", src, "--backend", "logits", "--store", store, "--reviewer", "a\nb", "--export"],
                  registry)
    assert ran.code == 1 and "give a name of 1 to 200 printable characters" in ran.stderr


def test_evaluate_compares_deepfaune_with_the_labels_given_in_review(season, tmp_path):
    src, registry, store, backend = season
    session = open_session(season, tmp_path)
    session.set_labels(["b/IMG_0001.JPG"], "wolf")  # DeepFaune: fox at 0.72, undefined at 0.8
    session.set_labels(["c/IMG_0001.JPG"], "fox")  # fox at 0.85: right
    session.set_labels(["e/IMG_0002.JPG"], "wolf")  # wolf alone; its sequence (fox + wolf) undefined
    session.store.close()
    out = tmp_path / "evaluation"
    ran = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--output", out], registry)
    assert ran.code == 0, ran.stderr
    assert "3 file(s) carry a label given in `deepfaune review`: using them" in ran.stderr
    with open(out / "thresholds.csv", newline="", encoding="utf-8") as fh:
        at = {(r["level"], r["threshold"]): r for r in csv.DictReader(fh)}
    image, sequence = at[("image", "0.8")], at[("sequence", "0.8")]
    # per image: b undefined; c fox, e2 wolf both right. Per sequence: only c is decided
    assert (image["labelled"], image["covered"], image["correct"]) == ("3", "2", "2")
    assert (sequence["labelled"], sequence["covered"], sequence["correct"]) == ("3", "1", "1")
    # at 0.7 b's fox (0.72) is decided, and wrong: the person said wolf
    assert (at[("image", "0.7")]["covered"], at[("image", "0.7")]["correct"]) == ("3", "2")
    assert backend.opened == 1  # re-decided from the store
    ran = run_cli(["evaluate", src, "--backend", "logits", "--store", tmp_path / "absent.sqlite"], registry)
    assert ran.code == 1 and "none yet" in ran.stderr and not (tmp_path / "absent.sqlite").exists()


def test_a_review_leaves_a_camtrap_dp_package_unlocked(tmp_path):
    """Reviewing writes nothing, so it holds no lock on the package: a run (or the review's own export) can go on."""
    from camtrapdp_helpers import make_package
    from deepfaune_plugin.testing import StoredLogitsBackend, registry_with

    package = make_package(tmp_path / "pkg")
    backend = StoredLogitsBackend(default="empty")
    registry = registry_with(backends=[backend])
    store = tmp_path / "store.sqlite"
    assert run_cli(["run", package, "--backend", "logits", "--store", store, "--no-report"], registry).code == 0
    host = resolve_host(registry, "auto", package)
    session = ReviewSession.open(package, host, backend, RunSettings(backend="logits", lang="en"),
                                 ResultStore(store, shared=True), {"output": None}, tmp_path / "thumbs", "Ana",
                                 show_all=True, log=lambda msg: None)
    try:
        assert len(session.items) == 6 and not (package / ".deepfaune.lock").exists()
        ran = run_cli(["run", package, "--backend", "logits", "--store", store, "--no-report"], registry)
        assert ran.code == 0 and "being written by another DeepFaune run" not in ran.stderr
    finally:
        session.store.close()


def test_fields_and_two_reviewers_side_by_side(season, tmp_path):
    """Issue 33.1/33.4: a reviewer records a count and sex (taking the label the file shows), a second reviewer
    labels it otherwise: both kept, the latest decides, `conflicts` lists both."""
    ana = open_session(season, tmp_path, reviewer="Ana")
    try:
        shown = ana.sequences[ana.where["a/IMG_0001.JPG"]].decisions[0].prediction_key
        ana.set_fields(["a/IMG_0001.JPG"], {"count": "2", "sex": "Female"})
        with pytest.raises(ReviewError, match="give it a label first .it shows 'undefined'"):
            ana.set_fields(["b/IMG_0001.JPG"], {"count": "1"})
        with pytest.raises(ReviewError, match="sex 'x': one of female, male is expected"):
            ana.set_fields(["a/IMG_0001.JPG"], {"sex": "x"})
        mine = ana.store.human_labels([ana.items["a/IMG_0001.JPG"]])["a/IMG_0001.JPG"]
        assert (mine.key, mine.fields.count, mine.fields.sex) == (shown, 2, "female")
    finally:
        ana.store.close()
    bob = open_session(season, tmp_path, reviewer="Bob")
    try:
        assert bob.set_labels(["a/IMG_0001.JPG"], "wolf")["summary"]["conflicts"] == 1  # the head's card
        found = bob.conflicts()
        assert [(c["f"], [(x["by"], x["key"]) for x in c["labels"]]) for c in found] == [
            ("a/IMG_0001.JPG", [("Bob", "wolf"), ("Ana", shown)])]
        assert found[0]["labels"][1]["fields"] == {"count": 2, "sex": "female"}
        bob.set_labels(["a/IMG_0001.JPG"], None)  # Bob withdraws his own: Ana's shows again
        assert bob.human["a/IMG_0001.JPG"].reviewer == "Ana" and bob.conflicts() == []
        assert bob.summary()["conflicts"] == 0
    finally:
        bob.store.close()


def test_progress_per_reviewer_counts_the_sequences_each_finished(season, tmp_path, monkeypatch):
    """Issue 33 item 7: N of M sequences done, per reviewer; the one who gave a sequence's last label finished it."""
    from deepfaune_plugin import known_files

    ana = open_session(season, tmp_path, reviewer="Ana")
    assert ana.summary()["by_reviewer"] == {} and ana.summary()["queue"] == 4
    ana.set_labels(["b/IMG_0001.JPG"], "wolf")
    ana.set_labels(["e/IMG_0001.JPG"], "fox")  # e has two images: not done yet
    assert ana.summary()["by_reviewer"] == {"Ana": 1} and ana.summary()["reviewed"] == 1
    ana.store.close()
    ben = open_session(season, tmp_path, reviewer="Ben")  # a second person, later, on the same store
    done = ben.set_labels(["e/IMG_0002.JPG"], "wolf")["summary"]
    assert done["by_reviewer"] == {"Ana": 1, "Ben": 1} and done["reviewed"] == 2 and done["queue"] == 4
    assert ben.set_labels(["e/IMG_0002.JPG"], None)["summary"]["by_reviewer"] == {"Ana": 1}
    ben.store.close()
    # and opening the review again reads no file (each was remembered when it was read; none changed since)
    monkeypatch.setattr(known_files, "RACY_NS", 0)
    open_session(season, tmp_path).store.close()
    reads = []
    real = known_files.hash_file
    monkeypatch.setattr(known_files, "hash_file", lambda path: reads.append(path) or real(path))
    again = open_session(season, tmp_path)
    assert reads == [] and again.summary()["by_reviewer"] == {"Ana": 1}
    again.store.close()
