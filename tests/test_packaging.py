"""What `pip install .` ships: every package of the source tree (a folder with __init__.py) is listed in
pyproject.toml, so a module that imports fine from a checkout is never missing from an installed copy (the
review app was, once: an editable install hid it)."""
from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the list is the same on older ones

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = {"deepfaune_plugin": ROOT / "deepfaune_plugin", **{name: ROOT / d for name, d in config["package-dir"].items()}}
    found = set()
    for name, folder in dirs.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set()
    assert "deepfaune_plugin.review" in found  # the walk sees the tree
    # and every asset folder's files ship with it
    for package in config["package-data"]:
        assert package in listed
    review_assets = {p.name for p in (ROOT / "deepfaune_plugin" / "review").glob("app.*")}
    assert review_assets <= {"app.html", "app.js", "app.css"} and len(review_assets) == 3
