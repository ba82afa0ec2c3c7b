"""The plugin author's reference (docs/plugins/reference.md, built by `mkdocs build --strict` in CI) covers the
whole api, and every field of every public type says what it is (issue 31.3): an author need not guess."""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from deepfaune_plugin import api, testing

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "plugins" / "reference.md"


def test_the_reference_lists_every_public_name():
    text = REFERENCE.read_text(encoding="utf-8")
    generated = set(re.findall(r"^::: deepfaune_plugin\.\w+\.(\w+)$", text, flags=re.M))
    written = set(re.findall(r"`(\w+)` = ", text))  # names griffe cannot see (tuple assignments)
    missing = [name for name in api.__all__ if name not in generated | written]
    assert missing == []
    assert {"registry_with", "run_cli", "LogitsBackend", "logits_for"} <= generated
    assert (api.ANIMAL, api.PERSON, api.VEHICLE, api.UNDEFINED, api.FAILED) == (1, 2, 3, "undefined", "failed")
    assert '`ANIMAL` = 1' in text and '`UNDEFINED` = "undefined"' in text


def _documented(cls: type) -> set[str]:
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    return set(re.findall(r"^    (\w+):", section, flags=re.M))


PUBLIC_TYPES = [getattr(api, name) for name in api.__all__ if inspect.isclass(getattr(api, name))
                and (dataclasses.is_dataclass(getattr(api, name)) or name in ("Host", "Backend", "Predictor",
                                                                              "ResultWriter"))]


@pytest.mark.parametrize("cls", [*PUBLIC_TYPES, testing.CliResult], ids=lambda c: c.__name__)
def test_every_field_of_a_public_type_is_documented_on_it(cls):
    if dataclasses.is_dataclass(cls):
        fields = {f.name for f in dataclasses.fields(cls)}
    else:  # the contracts' attributes (methods have their own docstrings)
        fields = {name for name in vars(cls).get("__annotations__", {}) if not name.startswith("_")}
    assert fields, cls
    assert sorted(fields - _documented(cls)) == []
