"""MegaDetector's own validator on a recognition file (megadetector is optional).

It runs in the Python named by MEGADETECTOR_PYTHON (CI gives it a venv of its own: megadetector's full
install wants torch; `pip install megadetector-utils` in a plain venv is enough for the validator), else in
this one when megadetector is importable; otherwise the test skips.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = (
    "import json, sys\n"
    "from megadetector.postprocessing.validate_batch_results import validate_batch_results, "
    "ValidateBatchResultsOptions\n"
    "o = ValidateBatchResultsOptions(); o.check_image_existence = True; o.relative_path_base = sys.argv[2]\n"
    "r = validate_batch_results(sys.argv[1], o)['validation_results']\n"
    "print(json.dumps([r['errors'], r['warnings']]))\n"
)


def megadetector_findings(results_json: Path, root: Path) -> list:
    """[errors, warnings] as validate_batch_results reports them, checking that every file exists under root."""
    python = os.environ.get("MEGADETECTOR_PYTHON")
    if not python:
        pytest.importorskip("megadetector.postprocessing.validate_batch_results")
        python = sys.executable
    out = subprocess.run([python, "-c", _SCRIPT, str(results_json), str(root)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])
