"""Issue 34 items 2-4: `deepfaune adapt` fits a site head on people's labels from the stored features, proves it by
cross-validation, and `deepfaune run --adapted NAME` decides with it from the store, running no model."""
from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from deepfaune_plugin.adapt import compare, fit_head, wilson
from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.cli import main
from deepfaune_plugin.models.heads import HeadError, base_head, list_heads, load_head, read_head
from deepfaune_plugin.models.installed import InstalledModels
from deepfaune_plugin.pipeline import run
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
FOX, YETI = (255, 0, 0), (200, 0, 60)  # both animals to the stand-in detector; its classifier calls both "genette"


@pytest.fixture()
def models(tmp_path: Path, standin_models: Path) -> Path:
    """A models folder of this test's own: heads are written into it."""
    return Path(shutil.copytree(standin_models, tmp_path / "models"))


def _season(root: Path, n: int = 24) -> tuple[Path, Path]:
    """n photos an hour apart (n sequences), alternately a "fox" and a "yeti" (no DeepFaune class), and their labels."""
    rows = []
    for i in range(n):
        colour = FOX if i % 2 == 0 else YETI
        path = make_jpeg(root / "src" / f"IMG_{i:04d}.JPG", 640, 480, date=T0 + timedelta(hours=i),
                         blobs=[(colour, (100 + 3 * i, 100, 300 + 3 * i, 300))], seed=i)
        rows.append((path.name, "renard" if i % 2 == 0 else "Yeti"))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        w.writerows(rows)
    return root / "src", root / "labels.csv"


def test_deepfaunes_own_head_is_read_from_the_graph_and_no_labels_leave_it_unchanged(models: Path):
    """The head read out of the ONNX classifier gives the graph's own logits from the graph's own features
    (within 1e-5), and a fit on no labels is that head exactly."""
    path = InstalledModels(models).file_for("1.4", "classifier")
    w0, b0 = base_head(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 3, 182, 182)).astype(np.float32)
    logits, features = session.run(["logits", "features"], {"input": x})
    assert w0.shape == (38, 16) and b0.shape == (38,)
    assert np.abs(features @ w0.T + b0 - logits).max() < 1e-5
    w, b = fit_head(np.zeros((0, 16), np.float32), np.zeros(0, int), w0, b0)
    assert np.abs(features @ w.T + b - logits).max() < 1e-5


def test_adapt_learns_a_new_class_proves_it_and_run_decides_with_it_from_the_store(tmp_path: Path, models: Path,
                                                                                   capsys, monkeypatch):
    src, labels = _season(tmp_path)
    store = tmp_path / "store.sqlite"
    common = ["--models-dir", str(models), "--store", str(store)]
    assert main(["run", str(src), "-o", str(tmp_path / "plain.csv"), "--no-report", "-q", *common]) == 0
    capsys.readouterr()

    assert main(["adapt", str(src), "--labels", str(labels), "--name", "site1", *common]) == 0
    out = capsys.readouterr().out
    assert "5-fold cross-validation by sequence: 24 labelled files in 24 sequences" in out
    assert ("accuracy   DeepFaune   0.0% [0.0%, 0.0%]   adapted  91.7% [79.2%, 100.0%]   "
            "difference +91.7% [+79.2%, +100.0%]") in out
    assert "    fox                          12   DeepFaune   0.0% [0.0%, 24.3%]   adapted  83.3% [55.2%, 95.3%]" in out
    assert "    yeti                         12   DeepFaune   0.0% [0.0%, 24.3%]   adapted 100.0% [75.7%, 100.0%]" in out
    assert "wrote head 'site1' (39 classes, 1 new)" in out
    assert "verdict: the adapted head is better on these labels" in out
    head = load_head(models, "site1")
    assert head.new_classes == ["yeti"] and head.classes[:38] == head.classes[:head.base_classes]
    assert head.counts == {"fox": 12, "yeti": 12} and head.helps and head.model_version == "1.4"
    assert [h.name for h in list_heads(models)[0]] == ["site1"]
    assert main(["models", "list", "--models-dir", str(models)]) == 0
    listed = capsys.readouterr().out
    assert "head site1  model 1.4" in listed and "39 classes (1 new: yeti)" in listed
    assert "cross-validated accuracy 0.0% -> 91.7%: helps" in listed and "labelled crops: fox 12, yeti 12" in listed
    assert f"helps (offered for {src.resolve()})" in listed

    from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend

    opened = []
    original = DeepFauneBackend.open
    monkeypatch.setattr(DeepFauneBackend, "open", lambda self, s: opened.append(s) or original(self, s))
    assert main(["run", str(src), "-o", str(tmp_path / "adapted.csv"), "--no-report", "-q", "--adapted", "site1",
                 "--lang", "en", *common]) == 0
    assert opened == []  # every file from the store: no model loaded, let alone run
    capsys.readouterr()
    assert main(["run", str(src), "-o", str(tmp_path / "again.csv"), "--no-report", "-q", *common]) == 0
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()
    hint = ("an adapted head site1 helps for this source (+91.7 points of accuracy in cross-validation): "
            "--adapted site1")
    assert hint in capsys.readouterr().err  # offered, never used unasked
    other = tmp_path / "other"  # the same photos elsewhere: the head was not proved there
    shutil.copytree(src, other)
    assert main(["run", str(other), "-o", str(tmp_path / "other.csv"), "--no-report", "-q", *common]) == 0
    assert "adapted head" not in capsys.readouterr().err
    with open(tmp_path / "plain.csv", encoding="utf-8") as a, open(tmp_path / "adapted.csv", encoding="utf-8") as b:
        plain, adapted = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["prediction"] for r in plain] == ["genette"] * 24
    got = [r["prediction"] for r in adapted]
    assert got[1::2] == ["yeti"] * 12 and got[0::2].count("fox") == 10 and set(got[0::2]) == {"fox", "undefined"}
    same = ("filename", "date", "seqnum", "count", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf")
    assert [[r[c] for c in same] for r in plain] == [[r[c] for c in same] for r in adapted]
    record = (tmp_path / "adapted-run.json").read_text(encoding="utf-8")
    assert '"adapted_head": "site1"' in record


def test_a_head_that_does_not_help_says_so(tmp_path: Path, models: Path, capsys):
    """Labels that are DeepFaune's own answers: the adapted head can only match it, and the verdict says plainly
    that it does not help."""
    src, _ = _season(tmp_path, 12)
    store = tmp_path / "store.sqlite"
    common = ["--models-dir", str(models), "--store", str(store)]
    labels = tmp_path / "genette.csv"
    labels.write_text("file,label\n" + "".join(f"IMG_{i:04d}.JPG,genette\n" for i in range(12)), encoding="utf-8")
    assert main(["run", str(src), "-o", str(tmp_path / "a.csv"), "--no-report", "-q", *common]) == 0
    assert main(["adapt", str(src), "--labels", str(labels), "--name", "same", *common]) == 0
    out = capsys.readouterr().out
    assert "difference +0.0% [+0.0%, +0.0%]" in out
    assert "verdict: the adapted head does NOT help on these labels" in out
    assert not load_head(models, "same").helps
    assert main(["run", str(src), "-o", str(tmp_path / "b.csv"), "--no-report", "-q", *common]) == 0
    assert "adapted head" not in capsys.readouterr().err  # a head that does not help is never offered
    assert main(["models", "list", "--models-dir", str(models)]) == 0
    assert "does NOT help (not offered)" in capsys.readouterr().out


def test_run_adapted_without_stored_features_falls_back_to_deepfaune_and_says_how_many(tmp_path: Path,
                                                                                        models: Path, capsys):
    src, labels = _season(tmp_path, 8)
    common = ["--models-dir", str(models)]
    assert main(["run", str(src), "-o", str(tmp_path / "a.csv"), "--no-report", "-q", "--store",
                 str(tmp_path / "s.sqlite"), *common]) == 0
    assert main(["adapt", str(src), "--labels", str(labels), "--name", "site1", "--store",
                 str(tmp_path / "s.sqlite"), *common]) == 0
    bare = ["--store", str(tmp_path / "bare.sqlite"), *common]
    assert main(["run", str(src), "-o", str(tmp_path / "b.csv"), "--no-report", "-q", "--no-features", *bare]) == 0
    capsys.readouterr()
    assert main(["run", str(src), "-o", str(tmp_path / "c.csv"), "--no-report", "-q", "--adapted", "site1",
                 *bare]) == 0
    err = capsys.readouterr().err
    assert "8 file(s) have no stored features" in err and "DeepFaune's own head decided them" in err
    with open(tmp_path / "b.csv", encoding="utf-8") as b, open(tmp_path / "c.csv", encoding="utf-8") as c:
        assert [r["prediction"] for r in csv.DictReader(b)] == [r["prediction"] for r in csv.DictReader(c)]


def test_unknown_heads_and_damaged_files_are_refused_in_one_line(tmp_path: Path, models: Path, capsys):
    src, _ = _season(tmp_path, 2)
    assert main(["run", str(src), "-o", str(tmp_path / "a.csv"), "--no-report", "-q", "--models-dir", str(models),
                 "--store", str(tmp_path / "s.sqlite"), "--adapted", "nope"]) == 1
    assert "no adapted head 'nope' in" in capsys.readouterr().err
    bad = models / "heads" / "bad.head.npz"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"not a zip")
    with pytest.raises(HeadError, match="bad.head.npz: not a readable head"):
        read_head(bad)
    with pytest.raises(HeadError, match="head name '../x'"):
        load_head(models, "../x")


def test_the_verdict_intervals_are_wilson_and_a_paired_bootstrap():
    assert wilson(12, 12).low == pytest.approx(0.7575, abs=1e-3)
    truth = {f"f{i}": "fox" for i in range(20)}
    seq = {f"f{i}": i for i in range(20)}
    base = {f"f{i}": "fox" if i < 10 else "genette" for i in range(20)}
    better = {f"f{i}": "fox" if i < 18 else "genette" for i in range(20)}
    v = compare(truth, seq, base, better, 5)
    assert (v.deepfaune.value, v.adapted.value) == (0.5, 0.9) and v.difference.value == pytest.approx(0.4)
    assert v.difference.low > 0 and v.helps
    assert not compare(truth, seq, base, base, 5).helps


def _adapted_season(tmp_path: Path, models: Path, capsys, n: int = 24) -> tuple[Path, Path, list[str]]:
    """A season run once (features kept), a head 'site1' fitted on its labels; (source, labels, common options)."""
    src, labels = _season(tmp_path, n)
    common = ["--models-dir", str(models), "--store", str(tmp_path / "store.sqlite")]
    assert main(["run", str(src), "-o", str(tmp_path / "plain.csv"), "--no-report", "-q", *common]) == 0
    assert main(["adapt", str(src), "--labels", str(labels), "--name", "site1", *common]) == 0
    capsys.readouterr()
    return src, labels, common


def _count_opens(monkeypatch) -> list:
    from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend

    opened: list = []
    original = DeepFauneBackend.open
    monkeypatch.setattr(DeepFauneBackend, "open", lambda self, s: opened.append(s) or original(self, s))
    return opened


def test_evaluate_adapted_scores_the_heads_decisions_from_the_store(tmp_path: Path, models: Path, capsys,
                                                                    monkeypatch):
    """evaluate --adapted scores what `run --adapted` decides, counted by hand from its table, and runs no model."""
    src, labels, common = _adapted_season(tmp_path, models, capsys)
    opened = _count_opens(monkeypatch)
    assert main(["run", str(src), "-o", str(tmp_path / "adapted.csv"), "--no-report", "-q", "--adapted", "site1",
                 "--lang", "en", *common]) == 0
    truth = {r["file"]: {"renard": "fox", "Yeti": "yeti"}[r["label"]] for r in csv.DictReader(open(labels))}
    with open(tmp_path / "adapted.csv", encoding="utf-8") as fh:
        predicted = {r["filename"]: r["prediction"] for r in csv.DictReader(fh)}
    covered = [rel for rel in truth if predicted[rel] != "undefined"]
    right = sum(predicted[rel] == truth[rel] for rel in covered)
    assert (len(covered), right) == (22, 22)  # the hand count: 2 foxes undefined, every other file right

    capsys.readouterr()
    out_dir = tmp_path / "eval"
    assert main(["evaluate", str(src), "--labels", str(labels), "--adapted", "site1", "-o", str(out_dir),
                 *common]) == 0
    assert opened == []  # no model loaded, let alone run
    out = capsys.readouterr().out
    assert "24 labelled files of 24 evaluated (model 1.4, adapted head site1):" in out
    with open(out_dir / "thresholds.csv", encoding="utf-8") as fh:
        row = next(r for r in csv.DictReader(fh) if r["level"] == "image" and float(r["threshold"]) == 0.8)
    assert (int(row["labelled"]), int(row["covered"]), int(row["correct"])) == (24, len(covered), right)
    assert float(row["accuracy"]) == pytest.approx(right / len(covered))

    assert main(["evaluate", str(src), "--labels", str(labels), "-o", str(tmp_path / "eval0"), *common]) == 0
    plain = capsys.readouterr().out
    assert "evaluated (model 1.4):" in plain and "adapted" not in plain


def test_every_hosts_output_names_the_head_only_with_adapted(tmp_path: Path, models: Path, capsys):
    """The folder table and camtrapR's record table get a `head` column, Timelapse's recognition info and the
    report's models the head's name, only with --adapted; without it each is byte for byte as before."""
    import json

    from deepfaune_plugin.hooks.timelapse.md_json import build_info

    src, labels, common = _adapted_season(tmp_path, models, capsys, 8)
    station = tmp_path / "ct" / "StationA"  # the same photos as a camtrapR station (the store knows them)
    shutil.copytree(src, station)
    outputs = {}
    for tag, extra in (("plain", []), ("adapted", ["--adapted", "site1"])):
        assert main(["run", str(src), "-o", str(tmp_path / f"{tag}-f.csv"), "-q", *extra, *common]) == 0
        assert main(["run", str(tmp_path / "ct"), "--host", "camtrapr", "-o", str(tmp_path / f"{tag}-ct.csv"),
                     "--no-report", "-q", *extra, *common]) == 0
        outputs[tag] = {kind: (tmp_path / f"{tag}-{kind}.csv").read_bytes() for kind in ("f", "ct")}
        outputs[tag]["report"] = next(tmp_path.glob(f"{tag}-f*.html")).read_bytes()
    assert main(["run", str(src), "-o", str(tmp_path / "again-f.csv"), "-q", *common]) == 0
    assert main(["run", str(tmp_path / "ct"), "--host", "camtrapr", "-o", str(tmp_path / "again-ct.csv"),
                 "--no-report", "-q", *common]) == 0
    assert (tmp_path / "again-f.csv").read_bytes() == (tmp_path / "plain-f.csv").read_bytes()
    assert (tmp_path / "again-ct.csv").read_bytes() == (tmp_path / "plain-ct.csv").read_bytes()
    for kind in ("f", "ct"):
        plain = list(csv.DictReader(outputs["plain"][kind].decode().splitlines()))
        adapted = list(csv.DictReader(outputs["adapted"][kind].decode().splitlines()))
        assert "head" not in plain[0] and plain and adapted  # camtrapR: the independent records only
        assert {r["head"] for r in adapted} == {"site1"} and len(adapted) == (8 if kind == "f" else len(adapted))
        assert [c for c in adapted[0] if c != "head"] == list(plain[0])  # one column more, before the stand-in mark
    assert b"adapted head" not in outputs["plain"]["report"] and b"site1" not in outputs["plain"]["report"]
    assert b'"role": "adapted head", "file": "site1"' in outputs["adapted"]["report"].replace(b'":"', b'": "') \
        .replace(b'","', b'", "')

    summary = run(src, RunSettings(models_dir=str(models), lang="en"), store=tmp_path / "store.sqlite",
                  output=tmp_path / "kept.csv", report=False, progress=False, adapted="site1")
    results = summary.results
    from dataclasses import replace

    with_head, without = build_info(results), build_info(replace(results, head=None))
    assert with_head["classifier"] == without["classifier"].replace(" [STAND-IN", "; adapted head site1 [STAND-IN")
    assert with_head["deepfaune"]["adapted_head"] == "site1" and "adapted_head" not in without["deepfaune"]
    assert "adapted" not in json.dumps(without)
    from deepfaune_plugin.hooks.timelapse.recognitions import _info_from_file, merge_info

    # the .ddb's Info row, as the import writes it over a run's Info: the head named, and gone after a plain run
    adapted_info = merge_info(_info_from_file(without), _info_from_file(with_head))
    assert adapted_info["classifier"] == with_head["classifier"] and "adapted head site1" in with_head["classifier"]
    assert merge_info(adapted_info, _info_from_file(without))["classifier"] == without["classifier"]


def test_review_adapted_decides_the_queue_and_the_export_with_the_head(tmp_path: Path, models: Path, capsys,
                                                                       monkeypatch):
    """The review's sequences and its export are the head's decisions (the export's table is `run --adapted`'s,
    byte for byte, where nobody labelled); no model runs."""
    from deepfaune_plugin.hooks.deepfaune import DeepFauneBackend
    from deepfaune_plugin.pipeline import resolve_host
    from deepfaune_plugin.plugins import default_registry
    from deepfaune_plugin.review.session import ReviewSession
    from deepfaune_plugin.store import ResultStore

    src, labels, common = _adapted_season(tmp_path, models, capsys)
    opened = _count_opens(monkeypatch)
    assert main(["run", str(src), "-o", str(tmp_path / "adapted.csv"), "--no-report", "-q", "--adapted", "site1",
                 "--lang", "en", *common]) == 0
    assert main(["review", str(src), "--export", "-o", str(tmp_path / "export.csv"), "--no-report", "--adapted",
                 "site1", "--lang", "en", *common]) == 0
    assert (tmp_path / "export.csv").read_bytes() == (tmp_path / "adapted.csv").read_bytes()

    registry = default_registry()
    settings = RunSettings(models_dir=str(models), lang="en")
    store = ResultStore(tmp_path / "store.sqlite", shared=True)
    try:
        shown, said = {}, {}
        for head in (None, "site1"):
            said[head] = []
            session = ReviewSession.open(src, resolve_host(registry, "auto", src), DeepFauneBackend(), settings, store,
                                         {"output": None}, tmp_path / "thumbs", "Ana", True, log=said[head].append,
                                         adapted=head)
            shown[head] = [d.prediction_key for seq in session.sequences for d in seq.decisions]
    finally:
        store.close()
    assert opened == []
    with open(tmp_path / "adapted.csv", encoding="utf-8") as fh:
        assert shown["site1"] == [r["prediction"] for r in csv.DictReader(fh)]
    assert shown[None] == ["genet"] * 24 and shown["site1"].count("yeti") == 12
    offers = [m for m in said[None] if m.startswith("an adapted head site1 helps for this source")]
    assert len(offers) == 1 and not any("helps for this source" in m for m in said["site1"])


def test_a_fold_started_from_the_full_fit_reaches_the_same_head_in_fewer_steps(monkeypatch):
    """The objective is strictly convex: started from the head fitted on all labels, a fold's fit ends at the
    same head as from DeepFaune's (every probability within 2e-3, the same best class), in fewer evaluations."""
    from deepfaune_plugin import adapt

    rng = np.random.default_rng(1)
    n, d, k = 600, 32, 6
    means = rng.normal(size=(k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    x = (means[y] * 0.5 + rng.normal(size=(n, d))).astype(np.float32)
    w0, b0 = (rng.normal(size=(k, d)) * 0.1).astype(np.float32), np.zeros(k, np.float32)
    full = fit_head(x, y, w0, b0)
    part = np.arange(n) % 5 != 0
    calls = []
    original = adapt.lbfgs
    monkeypatch.setattr(adapt, "lbfgs", lambda f, z, **kw: original(lambda v: calls.append(1) or f(v), z, **kw))
    cold = fit_head(x[part], y[part], w0, b0)
    cold_calls, calls[:] = len(calls), []
    warm = fit_head(x[part], y[part], w0, b0, start=full)

    def probs(head):
        logits = x @ head[0].T + head[1]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    assert np.abs(probs(cold) - probs(warm)).max() < 2e-3
    assert (probs(cold).argmax(axis=1) == probs(warm).argmax(axis=1)).all()
    assert len(calls) < cold_calls
