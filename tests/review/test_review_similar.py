"""Issue 34.5, a review that learns: `--order learn` puts first the sequences whose label teaches the most (DeepFaune
least sure; among as unsure, least like what people labelled), ordered again as labels come; and the pictures most
like one (cosine on the stored features), labelled at once as one batch. Features are hand-made: three clusters."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import resolve_host
from deepfaune_plugin.review.server import ReviewApp, ReviewServer
from deepfaune_plugin.review.session import ReviewError, ReviewSession
from deepfaune_plugin.review.similar import DIMS, FeatureIndex, LearnOrder, margin_of, max_cosine
from deepfaune_plugin.store import ResultStore, content_hash, store_info
from deepfaune_plugin.testing import StoredLogitsBackend, registry_with, run_cli
from reviewkit import fox_at, jpeg
from test_review_app import Client

TOKEN = "test-token-0123456789"
#: station -> (DeepFaune's fox probability, cluster of its features; None: no features kept)
SEASON = {"s0": (0.75, "A"), "s1": (0.55, "A"), "s2": (0.77, "A"), "s3": (0.75, "B"), "s4": (0.73, "B"),
          "s5": (0.78, "B"), "s6": (0.76, "C"), "s7": (0.72, "C"), "s8": (0.65, "C"), "s9": (0.40, None)}
WIDTH = 256  # wider than DIMS: the projection is used


def cluster_features(width: int = WIDTH, seed: int = 3) -> dict[str, np.ndarray]:
    """Three directions far apart, each picture near its cluster's (noise 0.2 of the centre's length)."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=width) for c in "ABC"}
    out = {}
    for station, (_, cluster) in SEASON.items():
        if cluster is not None:
            out[station] = centres[cluster] + 0.2 * np.linalg.norm(centres[cluster]) / np.sqrt(width) * rng.normal(
                size=width)
    return out


def put_features(store: Path, files: dict[Path, np.ndarray]) -> None:
    """The features a run with a model that gives them would have kept (float16, by content), one crop per file."""
    (use,) = store_info(store).fingerprints
    with sqlite3.connect(store) as db:
        db.executemany("INSERT INTO features VALUES (?, ?, -1, 0, ?, ?)",
                       [(use.fingerprint, content_hash(p), v.size, v.astype("<f2").tobytes()) for p, v in files.items()])


@pytest.fixture
def clusters(tmp_path):
    src = tmp_path / "season"
    outcomes = {}
    for i, (station, (p, _)) in enumerate(SEASON.items()):
        (src / station).mkdir(parents=True)
        jpeg(src / station / "IMG_0001.JPG", f"2024:05:{i + 1:02d} 10:00:00", 20 * i)
        outcomes[f"{station}/IMG_0001.JPG"] = fox_at(p)
    backend = StoredLogitsBackend(outcomes)
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "--lang", "en"], registry)
    assert ran.code == 0, ran.stderr
    put_features(store, {src / s / "IMG_0001.JPG": v for s, v in cluster_features().items()})
    return src, registry, store, backend


def open_session(clusters, tmp_path, order="learn") -> ReviewSession:
    src, registry, store, backend = clusters
    return ReviewSession.open(src, resolve_host(registry, "auto", src), backend, RunSettings(backend="logits", lang="en"),
                              ResultStore(store, shared=True), {"output": None}, tmp_path / "thumbs", "Ana",
                              show_all=True, log=lambda msg: None, order=order)


def stations(page: dict) -> list[str]:
    return [s["station"] for s in page["sequences"]]


# -- the computation, on hand-made vectors


def test_similar_returns_the_same_cluster_first_after_the_projection():
    feats = cluster_features()
    names = sorted(feats)
    crops = np.stack([feats[n] for n in names]).astype(np.float32)
    from deepfaune_plugin.review.similar import _unit, projection
    basis = projection(_unit(crops))
    assert basis.shape == (WIDTH, DIMS)
    index = FeatureIndex({n: i for i, n in enumerate(names)}, _unit(_unit(crops) @ basis), WIDTH, basis)
    got = index.similar("s1", 8)
    assert [n for n, _ in got][:2] in (["s0", "s2"], ["s2", "s0"])
    assert got[1][1] > 0.9 > 0.3 > got[2][1]  # the same cluster near 1, the others near 0
    assert "s1" not in [n for n, _ in got] and len(got) == 8
    assert index.similar("s9", 5) == []  # no features: nothing to compare
    assert [n for n, _ in index.similar("s6", 2, among=["s0", "s7", "s3"])] == ["s7", "s0"] or \
        [n for n, _ in index.similar("s6", 2, among=["s0", "s7", "s3"])] == ["s7", "s3"]


def test_max_cosine_in_blocks_is_the_plain_maximum(monkeypatch):
    import deepfaune_plugin.review.similar as similar
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(37, 8)).astype(np.float32), rng.normal(size=(23, 8)).astype(np.float32)
    monkeypatch.setattr(similar, "BLOCK", 5)
    assert np.allclose(max_cosine(q, k), (q @ k.T).max(axis=1))
    assert max_cosine(q, k[:0]).tolist() == [-1.0] * 37


def test_the_margin_is_the_gap_between_the_two_best_probabilities_as_deepfaune_pools():
    assert margin_of([np.log([0.7, 0.2, 0.1])]) == pytest.approx(0.5)
    # two crops: their logits' mean, over the multi-image temperature
    assert margin_of([np.log([0.7, 0.2, 0.1]), np.log([0.1, 0.2, 0.7])], 1.0, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert margin_of([[2.0, 0.0]], 2.0) == pytest.approx(np.tanh(0.5))  # e/(e+1) - 1/(e+1)
    assert margin_of([]) is None


def test_learn_order_unlike_first_among_as_unsure_and_reviewed_last():
    unit = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    index = FeatureIndex({"a1": 0, "a2": 1, "b1": 2, "b2": 3}, unit)
    order = LearnOrder.of(index, [["a1"], ["a2"], ["b1"], ["b2"], ["none"]], [0.71, 0.75, 0.78, 0.72, 0.1])
    assert order.order([0, 1, 2, 3, 4], [False] * 5) == [0, 1, 2, 3, 4]  # nothing labelled: the queue's order
    order.learn({"a1"})
    assert order.order([1, 2, 3, 4], [False] * 4) == [2, 3, 1, 4]  # b1 (cosine 0 to a1), b2 (0.11); none last
    order.learn({"a1", "b1"})
    assert order.order([1, 3], [False, False]) == [1, 3]
    assert order.order([1, 3], [True, False]) == [3, 1]  # a reviewed sequence taught already
    order.learn(set())  # labels taken back: computed again
    assert order.nearest.tolist() == [-1.0] * 5


# -- the session


def test_order_learn_puts_the_most_teaching_sequence_first_and_learns_as_labels_come(clusters, tmp_path):
    session = open_session(clusters, tmp_path)
    try:
        # margins: s9 0.38 (no features), s1 0.54, s8 0.64, then 0.7-0.8: the queue's order among them
        assert stations(session.page(0, size=3)) == ["s1", "s8", "s0"]
        assert session.summary()["without_features"] == 1 and session.summary()["order"] == "learn"
        session.set_labels(["s0/IMG_0001.JPG", "s3/IMG_0001.JPG"], "fox")  # clusters A and B now labelled
        # the page shown stays as it was; the next pages: cluster C (least like A and B) first, s9 last
        assert stations(session.page(0, size=3)) == ["s1", "s8", "s0"]
        rest = stations(session.page(1, size=3)) + stations(session.page(2, size=3)) + stations(session.page(3, size=3))
        assert set(rest[:2]) == {"s6", "s7"}  # cosine near 0 to what was labelled
        assert set(rest[2:5]) == {"s2", "s4", "s5"}  # near 1: as unsure, but a label of them teaches less
        assert rest[5:] == ["s9", "s3"]  # no features; then what a person labelled (taught already)
        learn = session._learn
        near = {session.sequences[i].station: float(learn.nearest[i]) for i in range(len(session.sequences))}
        assert max(near["s6"], near["s7"]) < 0.3 < 0.9 < min(near["s2"], near["s4"], near["s5"])
    finally:
        session.store.close()


def test_the_default_order_is_unchanged(clusters, tmp_path):
    session = open_session(clusters, tmp_path, order="queue")
    try:
        assert stations(session.page(0, size=20)) == [f"s{i}" for i in range(10)]
        assert "order" not in session.summary() and session._features is None  # nothing read
    finally:
        session.store.close()


def test_similar_pictures_then_labelled_at_once_with_one_undo(clusters, tmp_path):
    session = open_session(clusters, tmp_path, order="queue")
    try:
        ident = session._file_json(session.sequences[session.where["s6/IMG_0001.JPG"]].decisions[0])["id"]
        got = session.similar(ident, 4)
        assert [f["f"] for f in got["similar"]][:2] in (["s7/IMG_0001.JPG", "s8/IMG_0001.JPG"],
                                                        ["s8/IMG_0001.JPG", "s7/IMG_0001.JPG"])
        assert got["similar"][0]["cosine"] > 0.9 > got["similar"][2]["cosine"]
        assert [f["label"] for f in got["similar"][:2]] == ["undefined"] * 2 and len(got["similar"]) == 4  # 0.72, 0.65
        done = session.label_files(["s6/IMG_0001.JPG", "s7/IMG_0001.JPG", "s8/IMG_0001.JPG"], "badger")
        assert (done["files"], done["sequences"], done["undo"]) == (3, 3, 1)
        assert {f["f"]: f["label"] for f in session.similar(ident, 2)["similar"]} == {
            "s7/IMG_0001.JPG": "badger", "s8/IMG_0001.JPG": "badger"}
        assert session.undo()["restored"] == 3
        assert session.human == {}
        s9 = session._file_json(session.sequences[session.where["s9/IMG_0001.JPG"]].decisions[0])["id"]
        with pytest.raises(ReviewError, match="s9/IMG_0001.JPG: no features are kept for it"):
            session.similar(s9)
        with pytest.raises(ReviewError, match="no file of this review has the id 'nope'"):
            session.similar("nope")
        with pytest.raises(ReviewError, match="'unicorn' is no label of model 1.4"):
            session.label_files(["s6/IMG_0001.JPG"], "unicorn")
    finally:
        session.store.close()


def test_the_api_finds_and_labels_similar_pictures_with_the_token(clusters, tmp_path):
    session = open_session(clusters, tmp_path, order="queue")
    server = ReviewServer(ReviewApp(session, TOKEN, None)).start()
    try:
        client = Client(server)
        ident = session._file_json(session.sequences[session.where["s0/IMG_0001.JPG"]].decisions[0])["id"]
        cookie = {"Cookie": f"{client.cookie}={TOKEN}"}
        assert client.request("GET", f"/api/similar/{ident}?n=2")[0] == 403  # no cookie: refused
        status, _, data = client.request("GET", f"/api/similar/{ident}?n=2", headers=cookie)
        assert status == 200
        assert sorted(f["f"] for f in json.loads(data)["similar"]) == ["s1/IMG_0001.JPG", "s2/IMG_0001.JPG"]
        body = {"files": ["s1/IMG_0001.JPG", "s2/IMG_0001.JPG"], "key": "wolf"}
        assert client.request("POST", "/api/similar/label", body, headers=cookie)[0] == 403  # no header: refused
        status, _, data = client.request("POST", "/api/similar/label", body,
                                         headers={**cookie, "X-Review-Token": TOKEN})
        assert status == 200 and json.loads(data)["files"] == 2
        assert {rel: h.key for rel, h in session.human.items()} == {"s1/IMG_0001.JPG": "wolf", "s2/IMG_0001.JPG": "wolf"}
        status, _, data = client.request("GET", "/api/similar/nope", headers=cookie)
        assert status == 400 and "no file of this review" in json.loads(data)["error"]
    finally:
        server.stop()
        session.store.close()


def test_an_unknown_order_is_refused_before_anything_is_read(clusters, tmp_path):
    with pytest.raises(ReviewError, match="order 'best': one of queue, learn is expected"):
        open_session(clusters, tmp_path, order="best")


def test_a_stand_in_run_keeps_features_the_review_finds(tmp_path, standin_models):
    """The features a real run keeps (stand-in ONNX models, the default backend) are the ones the review reads:
    the same fingerprint and content keys. Nine photos, three with an animal (a red blob): each of those three
    finds the other two; a photo without an animal has none."""
    from deepfaune_plugin.pipeline import run
    from deepfaune_plugin.plugins import default_registry
    from test_store_features import _season

    src = _season(tmp_path / "src", 9)
    store = tmp_path / "store.sqlite"
    settings = RunSettings(models_dir=standin_models, lang="en")
    run(src, settings, output=tmp_path / "a.csv", store=store, progress=False)
    registry = default_registry()
    session = ReviewSession.open(src, resolve_host(registry, "auto", src), registry.backend(settings.backend), settings,
                                 ResultStore(store, shared=True), {"output": None}, tmp_path / "thumbs", "Ana",
                                 show_all=True, log=lambda msg: None, order="learn")
    try:
        animals = ["cam0/IMG_0000.JPG", "cam1/IMG_0003.JPG", "cam0/IMG_0006.JPG"]
        assert sorted(session.features().rows) == sorted(animals)
        got = session.similar(session._file_json(session.sequences[session.where[animals[0]]].decisions[0])["id"])
        assert sorted(f["f"] for f in got["similar"]) == sorted(animals[1:])
        assert session.summary()["without_features"] == len(session.queue) - len({session.where[a] for a in animals})
    finally:
        session.store.close()


def test_a_store_without_features_keeps_the_queue_order_and_says_so(tmp_path):
    from reviewkit import make_season

    season = make_season(tmp_path)  # StoredLogitsBackend keeps no features
    session = open_session(season, tmp_path)
    try:
        assert [s["id"] for s in session.page(0)["sequences"]] == [1, 2, 3, 4, 5, 6]  # --all: every one, as before
        assert session.summary()["without_features"] == 6
        with pytest.raises(ReviewError, match="a/IMG_0001.JPG: no features are kept for it"):
            session.similar(session._file_json(session.sequences[0].decisions[0])["id"])
    finally:
        session.store.close()
