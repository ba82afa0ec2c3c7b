"""What the host writes loads with camtrapR's readWildlifeInsights() (camtrapR >= 3.0) into a record table and a
camera table. Needs R with lubridate, and camtrapR: installed, or its source tree named by $CAMTRAPR_SOURCE
(readWildlifeInsights() needs only base R and lubridate, so R/readWildlifeInsights.R is sourced from it where
camtrapR's other dependencies are not installable). Skipped otherwise."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepfaune_plugin.testing import LogitsBackend, logits_for, registry_with, run_cli
from wi_fixtures import jpeg, make_export

import deepfaune_wildlife_insights.host as wi_host

RUN = ["--host", "wildlife-insights", "--backend", "logits", "--lang", "en", "--no-store", "-q", "--no-report"]

R_READ = r"""
suppressMessages(library(lubridate))
args <- commandArgs(trailingOnly = TRUE)
if (requireNamespace("camtrapR", quietly = TRUE) &&
    packageVersion("camtrapR") >= "3.0" && nzchar(Sys.getenv("CAMTRAPR_SOURCE")) == FALSE) {
  read <- camtrapR::readWildlifeInsights
} else {
  source(file.path(Sys.getenv("CAMTRAPR_SOURCE"), "R", "readWildlifeInsights.R"))
  read <- readWildlifeInsights
}
warned <- character(0)
x <- withCallingHandlers(
  if (length(args) == 1) read(directory = args[1]) else read(deployment_file = args[1], image_file = args[2]),
  warning = function(w) { warned <<- c(warned, conditionMessage(w)); invokeRestart("muffleWarning") })
rt <- x$recordTable
cat("records", nrow(rt), "\n")
cat("stations", nrow(x$CTtable_aggregated), "\n")
cat("warnings", length(warned), paste(warned, collapse = " | "), "\n")
for (i in order(rt$image_id)) cat("row", rt$image_id[i], rt$placename[i], rt$timestamp[i], rt$identified_by[i],
                                  rt$common_name[i], "\n", sep = "|")
"""


def _camtrapr_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    source = os.environ.get("CAMTRAPR_SOURCE")
    if source:
        return (Path(source) / "R" / "readWildlifeInsights.R").is_file()
    check = subprocess.run(["Rscript", "-e", 'q(status = !(requireNamespace("camtrapR", quietly = TRUE) && '
                                             'packageVersion("camtrapR") >= "3.0"))'], capture_output=True)
    return check.returncode == 0


pytestmark = pytest.mark.skipif(not _camtrapr_available(),
                                reason="needs Rscript with lubridate and camtrapR >= 3.0 (or $CAMTRAPR_SOURCE)")


def _read_in_r(tmp_path: Path, *paths: Path) -> dict:
    script = tmp_path / "read.R"
    script.write_text(R_READ, encoding="utf-8")
    res = subprocess.run(["Rscript", str(script), *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    out = {line.split()[0]: line.split(None, 1)[1].strip() if len(line.split()) > 1 else "" for line in lines
           if not line.startswith("row|")}
    out["rows"] = [line.split("|")[1:-1] for line in lines if line.startswith("row|")]
    return out


def _run(source: Path, *extra, outcomes=None):
    backend = LogitsBackend(outcomes or {}, default="empty")
    return run_cli(["run", source, *RUN, *extra], registry_with(wi_host, backends=[backend], installed=False))


def test_the_identified_copy_loads_with_read_wildlife_insights(tmp_path):
    export = make_export(tmp_path)
    assert _run(export, outcomes={"DEP1/a.jpg": logits_for("1.4", "fox")}).code == 0
    # the default copy, named explicitly (it is no second images table of the export)
    got = _read_in_r(tmp_path, export / "deployments.csv", export / "deepfaune_images.csv")
    assert got["records"] == "5" and got["stations"] == "2" and got["warnings"] == "0", got
    assert got["rows"][0] == ["img-a", "site-a", "2021-08-26 10:00:00", "DeepFaune 1.4", "Red Fox"]
    assert got["rows"][2][3:] == ["Elildo Carvalho", "Eurasian Badger"]
    # the export itself still reads as before: the copy does not make it a folder of two images tables
    assert _read_in_r(tmp_path, export)["records"] == "5"


def test_an_output_folder_and_a_bulk_upload_set_load_with_read_wildlife_insights(tmp_path):
    export = make_export(tmp_path)
    assert _run(export, "--output", tmp_path / "set").code == 0
    got = _read_in_r(tmp_path, tmp_path / "set")
    assert (got["records"], got["stations"], got["warnings"]) == ("5", "2", "0"), got
    tree = tmp_path / "survey"
    for n, (station, day) in enumerate([("StationA", "01"), ("StationA", "03"), ("StationB", "02"),
                                        ("StationB", "04")]):
        jpeg(tree / station / f"{n}.jpg", date=f"2024:05:{day} 10:00:00")
    assert _run(tree, "--output", tmp_path / "upload").code == 0
    got = _read_in_r(tmp_path, tmp_path / "upload")
    assert (got["records"], got["stations"], got["warnings"]) == ("4", "2", "0"), got
    assert got["rows"][0] == ["StationA/0.jpg", "StationA", "2024-05-01 10:00:00", "DeepFaune 1.4", "Blank"]
