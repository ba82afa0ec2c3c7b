"""The example plugin package (examples/deepfaune-example) installed the way pip installs it and run through its
entry point, and `deepfaune_plugin.testing`'s helpers (issue 19): what docs/plugins.md promises an author."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepfaune_plugin.testing import LogitsBackend, logits_for, registry_with, run_cli

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "deepfaune-example"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """`pip install examples/deepfaune-example` into a folder of its own (no deps; the build backend comes from
    pip's index, as for any user)."""
    target = tmp_path_factory.mktemp("example-site")
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          str(EXAMPLE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (target / "deepfaune_example" / "__init__.py").is_file()
    return target


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "cam1").mkdir(parents=True)
    (src / "cam1" / "a.txt").write_text("3 0 0")  # T = 1: softmax(3, 0, 0)[0] = 0.9094 -> cat 0.90
    (src / "cam1" / "b.txt").write_text("person")
    (src / "cam1" / "c.txt").write_text("0 0.2 0")  # 0.3792 -> under 0.5: undefined
    (src / "files.txt").write_text("cam1/a.txt\ncam1/b.txt  # the hiker\ncam1/c.txt\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("3 0 0")
    return src


def test_the_example_installs_and_runs_through_its_entry_point(installed_example, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed_example), os.environ.get("PYTHONPATH", "")]))
    deepfaune = [sys.executable, "-m", "deepfaune_plugin.cli"]
    listed = subprocess.run([*deepfaune, "plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("host", "filelist")]["origin"] == "deepfaune-example 0.1.0"
    assert rows[("backend", "textlogits")]["plugin"] == "example"
    src = _source(tmp_path)
    run = subprocess.run([*deepfaune, "run", str(src), "--backend", "textlogits", "--lang", "en", "--threshold",
                          "0.5", "--no-store", "-q"], capture_output=True, text=True, env=env)
    assert run.returncode == 3, run.stderr
    out = json.loads((src / "predictions.json").read_text())  # --host auto picked filelist (files.txt)
    assert sorted(out) == ["cam1/a.txt", "cam1/b.txt", "cam1/c.txt"]  # ../outside.txt refused, the run went on
    assert "files.txt line 4" in run.stderr and "outside.txt" in run.stderr
    assert out["cam1/b.txt"]["label"] == "human"
    # files without dates are sequences of their own: each is decided alone
    assert (out["cam1/a.txt"]["label"], out["cam1/a.txt"]["score"]) == ("cat", 0.90)
    assert out["cam1/c.txt"]["label"] == "undefined"


def test_the_example_host_with_the_testing_helpers_no_install_needed(tmp_path):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import deepfaune_example
    finally:
        sys.path.remove(str(EXAMPLE))
    src = _source(tmp_path)
    (src / "files.txt").write_text("cam1/a.txt\n")
    registry = registry_with(deepfaune_example, installed=False)
    result = run_cli(["run", src, "--backend", "textlogits", "--lang", "fr", "--threshold", "0.5", "--no-store",
                      "-q", "--no-report", "--min-score", "0.95"], registry)
    assert result.code == 0, result.stderr
    assert json.loads((src / "predictions.json").read_text()) == {}  # 0.90 < --min-score 0.95
    result = run_cli(["run", src, "--backend", "textlogits", "--lang", "fr", "--threshold", "0.5", "--no-store",
                      "-q", "--no-report"], registry)
    assert json.loads((src / "predictions.json").read_text())["cam1/a.txt"]["label"] == "chat"
    assert json.loads((src / "predictions.json").read_text())["cam1/a.txt"]["score"] == 0.90


def test_logits_backend_drives_a_built_in_host_to_known_decisions(tmp_path):
    src = tmp_path / "season"
    src.mkdir()
    for name in ("fox.jpg", "hiker.jpg", "broken.jpg", "nothing.jpg"):
        (src / name).write_bytes(b"\xff\xd8 not decoded: the backend answers from the table below")
    backend = LogitsBackend({"fox.jpg": logits_for("1.4", "fox"), "hiker.jpg": "person",
                             "broken.jpg": "failure: truncated"}, default="empty")
    result = run_cli(["run", src, "--host", "folder", "--backend", "logits", "--lang", "en", "--no-store", "-q",
                      "--no-report", "-o", tmp_path / "out.csv"], registry_with(backends=[backend]))
    assert result.code in (0, 3), result.stderr  # 3: some files failed (where that exit code exists)
    import pandas as pd

    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False).set_index("filename")
    # logit 8 against 37 zeros at DeepFaune 1.4's T = 1.1: e^7.27 / (e^7.27 + 37) = 0.975, written truncated
    assert table.loc["fox.jpg", "prediction"] == "fox" and table.loc["fox.jpg", "score"] == 0.97
    assert table.loc["hiker.jpg", "prediction"] == "human"
    assert table.loc["nothing.jpg", "prediction"] == "empty"
    assert "truncated" in result.stderr


def test_logits_for_refuses_a_label_the_model_lacks():
    with pytest.raises(ValueError, match="'unicorn' is not a class of model 1.4"):
        logits_for("1.4", "unicorn")


def test_registry_with_works_when_the_plugin_is_also_installed(installed_example, tmp_path):
    """Issue 31.3: docs/plugins.md's recipe, `registry_with(my_plugin, backends=[...])`, once the plugin is
    pip-installed (its entry point loads the same module): it raised pluggy's "already registered" before."""
    saved = sys.modules.pop("deepfaune_example", None)
    sys.path.insert(0, str(installed_example))
    try:
        import deepfaune_example

        assert Path(deepfaune_example.__file__).is_relative_to(installed_example)  # the installed copy
        registry = registry_with(deepfaune_example, backends=[LogitsBackend({"cam1/a.txt": "person"})])
        assert registry.broken == []
        assert registry.hosts["filelist"].plugin == "deepfaune_example"  # registered once, as given
        assert "example" not in {r.plugin for r in registry.hosts.values()}
        assert {"deepfaune", "logits", "textlogits"} <= set(registry.backends)  # the installed ones stay
        src = _source(tmp_path)
        (src / "files.txt").write_text("cam1/a.txt\n")
        result = run_cli(["run", src, "--backend", "logits", "--lang", "en", "--no-store", "-q", "--no-report"],
                         registry)
        assert result.code == 0, result.stderr
        assert json.loads((src / "predictions.json").read_text())["cam1/a.txt"]["label"] == "human"
        # an object given directly replaces an installed one of the same name (the installed plugin's stays)
        mine = deepfaune_example.TextLogitsBackend()
        registry = registry_with(backends=[mine])
        assert registry.broken == []
        assert registry.backends["textlogits"].obj is mine
        assert registry.backends["textlogits"].plugin == "test-objects"
        assert registry.hosts["filelist"].plugin == "example"
    finally:
        sys.path.remove(str(installed_example))
        sys.modules.pop("deepfaune_example", None)
        if saved is not None:
            sys.modules["deepfaune_example"] = saved
