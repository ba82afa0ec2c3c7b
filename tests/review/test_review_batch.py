"""Issue 33 items 2 and 5 (and the page side of 1): many sequences labelled at once by a filter, DeepFaune's
label accepted above a score, one undo for the whole batch (restoring exactly what was there, "no label"
included); the label search in any language, scientific names and accents aside; the empty queue said.

The season (reviewkit.make_season), one sequence per station a-f: a fox 0.99 (2024-05-01), b undefined 0.72,
c fox 0.85, d empty 1.0, e undefined 0.47 (two images), f fox 0.99 dated 1980."""
from __future__ import annotations

import json

import pytest

from deepfaune_plugin.review import session as session_module
from deepfaune_plugin.review.server import ReviewApp, ReviewServer
from deepfaune_plugin.review.session import ReviewError
from deepfaune_plugin.testing import run_cli
from deepfaune_plugin.types import HumanFields
from reviewkit import make_season, table
from test_review_app import CODE, TOKEN, Client, open_session


@pytest.fixture
def season(tmp_path):
    return make_season(tmp_path)


@pytest.fixture
def session(season, tmp_path):
    s = open_session(season, tmp_path, reviewer="Ana")
    yield s
    s.store.close()


def own(session, rel):
    """Ana's own label of `rel` as the store keeps it (key, fields, when), or None."""
    found = session.store.human_records([session.items[rel]]).get(rel, [])
    mine = [h for h in found if h.reviewer == "Ana"]
    return (mine[0].key, mine[0].fields, mine[0].at) if mine else None


def test_a_filter_selects_by_station_date_label_score_and_reviewed(session):
    def seqs(data):
        return session.select(data)["first"]

    assert seqs({}) == [1, 2, 3, 4, 5, 6]
    assert seqs({"station": "b"}) == [2]
    assert seqs({"date_from": "2024-05-02", "date_to": "2024-05-03"}) == [2, 3]
    assert seqs({"date_to": "2000-01-01"}) == [6]  # the camera whose clock was never set
    assert seqs({"label": "Fuchs"}) == [1, 3, 6]  # any language of the model
    assert seqs({"label": "Vulpes vulpes"}) == [1, 3, 6]  # or the scientific name
    assert seqs({"label": "undefined"}) == [2, 5] == seqs({"label": "indéfini"})
    assert seqs({"score_below": 0.9}) == [2, 3, 5]
    assert seqs({"score_from": 0.8, "score_below": 0.9}) == [3]
    assert seqs({"queue": True}) == [2, 3, 5, 6]
    assert session.select({"score_below": 0.9}) == {"sequences": 3, "files": 4, "outside_queue": 0,
                                                    "first": [2, 3, 5], "max_files": 20_000}
    session.set_labels(["c/IMG_0001.JPG"], "badger")
    assert seqs({"reviewed": True}) == [3] and seqs({"reviewed": "no"}) == [1, 2, 4, 5, 6]
    assert seqs({"label": "blaireau"}) == [3]  # the label shown now: the person's


@pytest.mark.parametrize("data, said", [
    ({"score_below": 2}, "filter score_below '2': a score from 0 to 1 is expected"),
    ({"score_from": "high"}, "filter score_from 'high': a score from 0 to 1 is expected"),
    ({"date_from": "2024-13-01"}, "filter date_from '2024-13-01': a day as YYYY-MM-DD is expected"),
    ({"colour": "red"}, "filter: 'colour' is no filter; filters: station, date_from, date_to, label, score_from, "
                        "score_below, reviewed, queue"),
    ({"label": "zebra"}, "filter label 'zebra': no label of model 1.4 is called so"),
    ({"label": "deer"}, "filter label 'deer': several labels are called so (red deer, roe deer, fallow deer): "
                        "type more"),
    ({"station": "x" * 201}, "filter station: text of at most 200 printable characters is expected"),
    ({"reviewed": 3}, "filter reviewed '3': true or false is expected"),
    ("all", "filter: an object is expected"),
])
def test_a_filter_that_cannot_be_read_is_refused_by_name(session, data, said):
    with pytest.raises(ReviewError) as err:
        session.select(data)
    assert str(err.value) == said


def test_a_batch_label_is_one_step_and_one_undo_restores_exactly_what_was_there(session):
    session.set_labels(["c/IMG_0001.JPG"], "badger")
    session.set_fields(["c/IMG_0001.JPG"], {"count": "2", "comment": "two badgers"})
    before_c = own(session, "c/IMG_0001.JPG")
    assert before_c[:2] == ("badger", HumanFields(count=2, comment="two badgers"))
    done = session.batch_label({"score_below": 0.9}, "wolf")
    assert (done["sequences"], done["files"], done["changed"], done["what"], done["undo"]) == (3, 4, 4, "wolf", 1)
    assert {rel: own(session, rel)[0] for rel in ("b/IMG_0001.JPG", "c/IMG_0001.JPG", "e/IMG_0001.JPG",
                                                  "e/IMG_0002.JPG")} == dict.fromkeys(
        ("b/IMG_0001.JPG", "c/IMG_0001.JPG", "e/IMG_0001.JPG", "e/IMG_0002.JPG"), "wolf")
    assert own(session, "c/IMG_0001.JPG")[1] == before_c[1]  # a batch label keeps what was recorded
    assert [s.decisions[0].prediction_key for s in session.sequences] == ["fox", "wolf", "wolf", "empty", "wolf", "fox"]
    assert done["summary"]["reviewed"] == 3  # of the queue (2, 3, 5, 6): all but 6

    undone = session.undo()
    assert (undone["restored"], undone["what"], undone["undo"]) == (4, "wolf", 0)
    assert own(session, "c/IMG_0001.JPG") == before_c  # its label, fields and date exactly as they were
    assert [own(session, rel) for rel in ("b/IMG_0001.JPG", "e/IMG_0001.JPG", "e/IMG_0002.JPG")] == [None] * 3
    assert [s.decisions[0].prediction_key for s in session.sequences] == [
        "fox", "undefined", "badger", "empty", "undefined", "fox"]
    assert undone["summary"]["reviewed"] == 1  # c: Ana's badger, given before the batch
    with pytest.raises(ReviewError, match="^no batch to undo$"):
        session.undo()


def test_undo_leaves_another_reviewers_labels_alone(season, tmp_path):
    bob = open_session(season, tmp_path, reviewer="Bob")
    bob.set_labels(["b/IMG_0001.JPG"], "badger")
    bob.store.close()
    ana = open_session(season, tmp_path, reviewer="Ana")
    try:
        ana.batch_label({"station": "b"}, "wolf")
        assert sorted((h["by"], h["key"]) for h in ana.conflicts()[0]["labels"]) == [  # side by side
            ("Ana", "wolf"), ("Bob", "badger")]
        ana.undo()
        assert ana.conflicts() == []
        assert (ana.human["b/IMG_0001.JPG"].key, ana.human["b/IMG_0001.JPG"].reviewer) == ("badger", "Bob")
    finally:
        ana.store.close()


def test_accept_takes_deepfaunes_label_of_each_sequence_and_skips_undefined_ones(session):
    done = session.batch_accept({"score_from": 0.8})
    assert (done["sequences"], done["files"], done["skipped"]) == (4, 4, 0)
    assert {rel: own(session, rel)[0] for rel in session.human} == {
        "a/IMG_0001.JPG": "fox", "c/IMG_0001.JPG": "fox", "d/IMG_0001.JPG": "empty", "f/IMG_0001.JPG": "fox"}
    session.undo()
    assert session.human == {}
    done = session.batch_accept({"score_below": 0.8})
    assert (done["sequences"], done["files"], done["skipped"], done["undo"]) == (0, 0, 2, 0)  # nothing to undo


def test_a_batch_over_the_bound_is_refused_and_nothing_kept(session, monkeypatch):
    monkeypatch.setattr(session_module, "MAX_BATCH_FILES", 3)
    with pytest.raises(ReviewError) as err:
        session.batch_label({}, "fox")
    assert str(err.value) == ("the filter takes 7 files; at most 3 are labelled at once: narrow it (a station, a "
                              "date range) and label them in parts")
    assert session.human == {} and session.batches == []
    with pytest.raises(ReviewError, match="'zebra' is no label of model 1.4"):
        session.batch_label({}, "zebra")


def test_a_batch_is_refused_once_the_store_is_gone(session):
    session.store.path.unlink()
    with pytest.raises(ReviewError, match="was removed or replaced while this review was open"):
        session.batch_label({"station": "b"}, "fox")


@pytest.mark.parametrize("typed, first, name", [
    ("Gams", "chamois", "Gämse"), ("gamse", "chamois", "Gämse"), ("Rupicapra", "chamois", "Rupicapra rupicapra"),
    ("écureuil", "squirrel", "ecureuil"), ("ECUREUIL", "squirrel", "ecureuil"), ("blaireau", "badger", "blaireau"),
    ("Meles meles", "badger", "Meles meles"), ("fox", "fox", ""), ("Vogel", "bird", "Vogel"),
    ("  sanglier ", "wild boar", "sanglier"),
])
def test_search_finds_a_class_by_any_name_accents_aside(session, typed, first, name):
    found = session.search(typed)
    assert (found[0]["key"], found[0]["name"]) == (first, name)


def test_search_prefix_order_and_no_match(session):
    assert [f["key"] for f in session.search("deer")] == ["red deer", "roe deer", "fallow deer"]  # a word begins so
    assert [(f["key"], f["name"]) for f in session.search("cha")] == [  # the model's order
        ("golden jackal", "chacal doré"), ("chamois", ""), ("cat", "chat")]
    assert session.search("zzzz") == []
    assert len(session.search("")) == len(session.labels())
    assert session.search("x" * 5000) == []  # bounded: only the first 100 characters are read


def test_the_empty_queue_says_why_and_how_to_see_everything(session):
    assert session.summary()["empty"] is None
    session.queue = []
    said = session.summary()["empty"]
    assert said.startswith("Nothing to review: none of the 6 sequences of ")
    assert f"`deepfaune review {session.source} --all`" in said and "(0.8 to 0.90)" in said


@pytest.fixture
def served(season, tmp_path):
    session = open_session(season, tmp_path, reviewer="Ana")
    server = ReviewServer(ReviewApp(session, TOKEN, None, code=CODE)).start()
    yield Client(server), session
    server.stop()
    session.store.close()


def test_the_api_keeps_the_token_rule_for_every_new_action(served):
    client, session = served
    cookie = {"Cookie": f"{client.cookie}={TOKEN}"}
    write = {**cookie, "X-Review-Token": TOKEN, "Content-Type": "application/json"}
    for path, body in (("/api/select", {"filter": {}}), ("/api/batch/label", {"filter": {}, "key": "fox"}),
                       ("/api/batch/accept", {"filter": {}}), ("/api/undo", {}),
                       ("/api/fields", {"files": ["c/IMG_0001.JPG"], "values": {"count": 2}})):
        status, _, _ = client.request("POST", path, body, headers=cookie)  # the cookie alone changes nothing
        assert status == 403, path
    assert session.human == {}
    for path in ("/api/search?q=fox", "/api/stations", "/api/conflicts"):
        assert client.request("GET", path)[0] == 403, path
    status, _, data = client.request("GET", "/api/search?q=%C3%A9cureuil", headers=cookie)
    assert status == 200 and json.loads(data)[0]["key"] == "squirrel"
    assert json.loads(client.request("GET", "/api/stations", headers=cookie)[2]) == list("abcdef")
    status, _, data = client.request("POST", "/api/batch/label", {"filter": {"label": "renard"}, "key": "badger"},
                                     headers=write)
    assert status == 200 and (json.loads(data)["sequences"], json.loads(data)["files"]) == (3, 3)
    status, _, data = client.request("POST", "/api/select", {"filter": {"score_below": "x"}}, headers=write)
    assert status == 400 and json.loads(data) == {"error": "filter score_below 'x': a score from 0 to 1 is expected"}
    status, _, data = client.request("POST", "/api/fields", {"files": ["c/IMG_0001.JPG"],
                                                             "values": {"count": "3", "sex": "female"}}, headers=write)
    assert status == 200 and json.loads(data)["changed"] == 1
    assert session.human["c/IMG_0001.JPG"].fields == HumanFields(count=3, sex="female")
    status, _, data = client.request("POST", "/api/undo", {}, headers=write)  # the batch, not the fields given after
    assert status == 200 and json.loads(data)["restored"] == 3
    assert session.human == {}
    status, _, data = client.request("POST", "/api/undo", {}, headers=write)
    assert status == 400 and json.loads(data) == {"error": "no batch to undo"}


def test_a_batch_is_written_back_like_any_label(season, tmp_path):
    src, registry, store, backend = season
    session = open_session(season, tmp_path, reviewer="Ana")
    try:
        session.batch_accept({"score_from": 0.95})
    finally:
        session.store.close()
    ran = run_cli(["review", src, "--backend", "logits", "--store", store, "--lang", "en", "--export",
                   "--no-report"], registry)
    assert ran.code == 0, ran.stderr
    rows = table(src)
    assert {rel: rows[rel]["reviewed"] for rel in rows} == {
        "a/IMG_0001.JPG": "Ana", "b/IMG_0001.JPG": "", "c/IMG_0001.JPG": "", "d/IMG_0001.JPG": "Ana",
        "e/IMG_0001.JPG": "", "e/IMG_0002.JPG": "", "f/IMG_0001.JPG": "Ana"}
