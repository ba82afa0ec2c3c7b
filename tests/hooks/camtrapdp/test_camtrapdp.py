"""The Camtrap DP host: enrich a package with DeepFaune observations (fake backend, no model)."""
from __future__ import annotations

import http.server
import json
import threading
from functools import partial
from pathlib import Path

import pytest

from camtrapdp_helpers import (OBS_ROWS, frictionless_validate, make_package, read_rows, run_on, stamp,
                               tree_digest)
from deepfaune_plugin import __version__
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hooks.camtrapdp.host import CamtrapDPHost
from fakes import outcome_from_name

BY = f"DeepFaune 1.4 (deepfaune-plugin {__version__})"


def ours(rows):
    return [r for r in rows if r["classifiedBy"] == BY]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return make_package(tmp_path / "pkg")


def test_detect(package: Path, tmp_path: Path):
    host = CamtrapDPHost()
    assert host.detect(package) and host.detect(package / "datapackage.json")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not host.detect(plain)
    (plain / "datapackage.json").write_text('{"resources": [{"name": "data", "path": "x.csv"}]}')
    assert not host.detect(plain)  # a Frictionless package, but not Camtrap DP
    summary, _ = run_on(package)  # --host auto picks camtrapdp over folder
    assert summary.manifest.host == "camtrapdp"


def test_enrich_writes_media_and_event_observations(package: Path):
    before = (package / "observations.csv").read_bytes()
    summary, logs = run_on(package)
    assert summary.written == [package / "observations.csv", package / "datapackage.json"]
    after = (package / "observations.csv").read_bytes()
    # every earlier record (human, other machine, a quoted two-line comment, CRLF) is byte-identical
    assert after.startswith(before)
    rows = read_rows(package / "observations.csv")
    assert [r["observationID"] for r in rows[:3]] == ["h-event-1", "h-m01", "md-m05"]
    mine = ours(rows)
    assert len(mine) == 6 + 4  # one per media, one per DeepFaune sequence (fox x3, empty, person, broken)
    by_media = {r["mediaID"]: r for r in mine if r["observationLevel"] == "media"}
    fox = by_media["m02"]
    assert (fox["observationType"], fox["scientificName"], fox["count"]) == ("animal", "Vulpes vulpes", "1")
    # fake box (1000, 750, 2000, 1500) in a 4000 x 3000 image; 3-image sequence: softmax(8/1.04) → 0.98
    assert [fox[k] for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight")] == ["0.25", "0.25", "0.25", "0.25"]
    assert fox["classificationProbability"] == "0.98"
    assert fox["classificationMethod"] == "machine" and fox["classifiedBy"] == BY
    assert fox["eventStart"] == fox["eventEnd"] == stamp(2)
    assert fox["classificationTimestamp"].endswith("Z")
    events = {r["eventID"]: r for r in mine if r["observationLevel"] == "event"}
    fox_event = events[fox["eventID"]]
    assert {by_media[m]["eventID"] for m in ("m01", "m02", "m03")} == {fox["eventID"]}
    assert (fox_event["eventStart"], fox_event["eventEnd"]) == (stamp(0), stamp(4))
    assert fox_event["mediaID"] == "" and fox_event["bboxX"] == "" and fox_event["count"] == "1"
    assert (by_media["m04"]["observationType"], by_media["m04"]["scientificName"]) == ("blank", "")
    person = by_media["m05"]
    assert (person["observationType"], person["scientificName"], person["count"]) == ("human", "Homo sapiens", "1")
    assert person["bboxX"] == "0.1" and person["bboxHeight"] == "0.6"  # (400, 300, 1200, 2100) / (4000, 3000)
    broken = by_media["m06"]
    assert broken["observationType"] == "unclassified" and broken["classificationProbability"] == ""
    assert "could not process this file: not an image" in broken["observationComments"]
    assert events[broken["eventID"]]["observationType"] == "unclassified"

    dp = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    assert dp["project"]["observationLevel"] == ["media", "event"]
    taxa = {t["scientificName"]: t for t in dp["taxonomic"]}
    # the user's entry is completed, never overwritten
    assert taxa["Vulpes vulpes"]["vernacularNames"]["eng"] == "red fox"
    assert taxa["Vulpes vulpes"]["vernacularNames"]["fra"] == "renard"
    human = taxa["Homo sapiens"]
    assert human["taxonRank"] == "species"
    assert {k: human["vernacularNames"][k] for k in ("eng", "fra", "deu", "ita", "spa")} == {
        "eng": "human", "fra": "humain", "deu": "Mensch", "ita": "umano", "spa": "humano"}
    assert dp["created"] == "2024-06-01T10:00:00Z"  # the package's own metadata is left alone
    # the previous files are backed up
    (backup,) = (package / ".deepfaune_backups").iterdir()
    assert (backup / "observations.csv").read_bytes() == before
    assert json.loads((backup / "datapackage.json").read_text())["project"]["observationLevel"] == ["media"]


def test_second_run_leaves_the_same_files(package: Path):
    run_on(package)
    first = tree_digest(package)
    summary, _ = run_on(package)
    assert summary.written == []
    assert tree_digest(package) == first  # no new backup either


def test_rerun_replaces_this_plugins_rows_and_keeps_the_rest(package: Path):
    run_on(package)
    deer = lambda item: "red deer" if "fox" in item.path.name else outcome_from_name(item)  # noqa: E731
    run_on(package, rule=deer)
    rows = read_rows(package / "observations.csv")
    mine = ours(rows)
    assert len(mine) == 10  # replaced, not added
    assert {r["scientificName"] for r in mine} == {"Cervus elaphus", "Homo sapiens", ""}
    assert OBS_ROWS.encode() in (package / "observations.csv").read_bytes()
    dp = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    names = [t["scientificName"] for t in dp["taxonomic"]]
    assert "Cervus elaphus" in names and "Vulpes vulpes" in names  # the user's fox entry stays (human rows use it)
    assert len(list((package / ".deepfaune_backups").iterdir())) == 2


def test_a_name_added_by_an_earlier_run_is_dropped_when_unused(package: Path):
    (package / "observations.csv").write_bytes(
        (package / "observations.csv").read_bytes().split(b"\r\n", 1)[0] + b"\r\n")  # no human rows
    run_on(package)
    run_on(package, rule=lambda item: "empty")
    dp = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    names = [t["scientificName"] for t in dp["taxonomic"]]
    assert "Homo sapiens" not in names  # written by the first run, used by nobody now
    assert "Vulpes vulpes" in names  # the user's own entry is never removed


def test_undefined_becomes_unknown_with_top1_in_comments(package: Path):
    run_on(package, threshold=0.99)  # the fox sequence scores 0.98
    by_media = {r["mediaID"]: r for r in ours(read_rows(package / "observations.csv")) if r["mediaID"]}
    row = by_media["m01"]
    assert (row["observationType"], row["scientificName"], row["classificationProbability"]) == ("unknown", "", "0.98")
    assert row["observationComments"] == "DeepFaune: undefined; best guess fox with score 0.98 < threshold 0.99"
    assert row["bboxWidth"] == "0.25"  # the animal box is still useful


def _tree_unchanged(package: Path, action) -> str:
    before = tree_digest(package)
    with pytest.raises(DeepfauneError) as info:
        action()
    assert tree_digest(package) == before
    return str(info.value)


def test_bad_json_is_a_clear_error_and_changes_nothing(package: Path):
    (package / "datapackage.json").write_text('{"profile": "x",\n  "resources": [}', encoding="utf-8")
    message = _tree_unchanged(package, lambda: run_on(package, host="camtrapdp"))
    assert "datapackage.json: not valid JSON (line 2, column 17" in message


def test_missing_media_file_is_a_clear_error_and_changes_nothing(package: Path):
    (package / "media" / "dep1" / "fox_2.jpg").unlink()
    message = _tree_unchanged(package, lambda: run_on(package))
    assert "1 media files are missing: media/dep1/fox_2.jpg" in message and "--skip-missing" in message


def test_skip_missing_classifies_the_others(package: Path):
    (package / "media" / "dep1" / "fox_2.jpg").unlink()
    summary, logs = run_on(package, options={"skip_missing": True})
    assert "warning: media/dep1/fox_2.jpg: media file is missing; skipped" in logs
    media_ids = {r["mediaID"] for r in ours(read_rows(package / "observations.csv"))}
    assert "m02" not in media_ids and {"m01", "m03"} <= media_ids


@pytest.mark.parametrize("bad_path", ["../outside.jpg", "media/../../etc/passwd", "/abs/x.jpg", "./media/x.jpg"])
def test_file_path_escaping_the_package_is_refused(tmp_path: Path, bad_path: str):
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        ["m99", "dep1", "", stamp(50), bad_path, "false", "x.jpg", "image/jpeg", "", "", ""]])
    message = _tree_unchanged(package, lambda: run_on(package))
    assert f"{bad_path!r} is not a path inside the package" in message and "m99" in message


def test_unsupported_version_and_missing_table(package: Path):
    dp = json.loads((package / "datapackage.json").read_text())
    dp["profile"] = "https://raw.githubusercontent.com/tdwg/camtrap-dp/0.1.7/camtrap-dp-profile.json"
    (package / "datapackage.json").write_text(json.dumps(dp))
    assert "Camtrap DP 0.1.7 is not supported" in _tree_unchanged(package, lambda: run_on(package, host="camtrapdp"))
    dp["profile"] = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/camtrap-dp-profile.json"
    (package / "datapackage.json").write_text(json.dumps(dp))
    (package / "media.csv").unlink()
    assert "the media table media.csv is missing" in _tree_unchanged(package, lambda: run_on(package))


def test_media_with_unknown_deployment_is_refused(tmp_path: Path):
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        ["m99", "depX", "", stamp(50), "media/dep1/fox_1.jpg", "false", "", "image/jpeg", "", "", ""]])
    assert "deploymentID not in the deployments table: depX" in _tree_unchanged(package, lambda: run_on(package))


def test_invalid_result_is_refused_before_anything_is_written(package: Path, monkeypatch):
    from deepfaune_plugin.hooks.camtrapdp import host as camtrapdp_host

    real = camtrapdp_host.build_rows

    def broken_rows(*args, **kwargs):
        rows = real(*args, **kwargs)
        rows[1]["bboxWidth"] = "1.5"  # out of range
        rows[2]["eventStart"] = "2024-05-03 06:00:00"  # no offset, no T
        return rows

    monkeypatch.setattr(camtrapdp_host, "build_rows", broken_rows)
    message = _tree_unchanged(package, lambda: run_on(package))
    assert "would not be valid Camtrap DP; nothing was written" in message
    assert "observations.csv row 5 bboxWidth: 1.5 is above the maximum 1" in message
    assert "row 6 eventStart: '2024-05-03 06:00:00' is not a datetime" in message


def test_package_changed_during_the_run_is_not_overwritten(package: Path, monkeypatch):
    from deepfaune_plugin.hooks.camtrapdp import host as camtrapdp_host

    real = camtrapdp_host.build_rows

    def meddle(*args, **kwargs):
        with open(package / "observations.csv", "ab") as fh:
            fh.write(b"late,dep1,,,2024-05-03T06:00:00Z,2024-05-03T06:00:00Z,event,blank" + b"," * 20 + b"\r\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(camtrapdp_host, "build_rows", meddle)
    with pytest.raises(DeepfauneError, match="changed while DeepFaune was running; nothing was written"):
        run_on(package)
    assert not (package / ".deepfaune_backups").exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web(tmp_path: Path):
    """A local HTTP server (no network needed) serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_media_skipped_unless_fetch_remote(tmp_path: Path, web):
    www, url = web
    from imagegen import make_jpeg

    make_jpeg(www / "asset1", width=160, height=120)
    remote = [["r1", "dep2", "", stamp(3000), f"{url}/asset1", "true", "fox_remote.JPG", "image/jpeg", "", "", ""],
              ["r2", "dep2", "", stamp(3100), f"{url}/gone", "true", "", "image/jpeg", "", "", ""]]
    package = make_package(tmp_path / "pkg", extra_media_rows=remote)
    summary, logs = run_on(package)
    assert any("2 media given by URL were skipped" in line and "--fetch-remote" in line for line in logs)
    assert "r1" not in {r["mediaID"] for r in read_rows(package / "observations.csv")}

    rule = lambda item: "fox" if item.host_key == "r1" else outcome_from_name(item)  # noqa: E731
    summary, logs = run_on(package, rule=rule, options={"fetch_remote": True, "fetch_allow_private": True})
    cached = package / ".deepfaune_cache" / "r1.jpg"  # named after the mediaID, suffix from fileName
    assert cached.read_bytes() == (www / "asset1").read_bytes()
    assert any(line.startswith(f"warning: {url}/gone: download failed") for line in logs)
    item = next(i for i in summary.manifest.items if i.host_key == "r1")
    assert (item.relpath, item.group) == ("~remote/r1.jpg", "dep2")
    local = next(i for i in summary.manifest.items if i.host_key == "m05")
    assert local.group == "dep2:media/dep2"  # sequences stay within a deployment and a folder
    by_media = {r["mediaID"]: r for r in ours(read_rows(package / "observations.csv"))}
    assert by_media["r1"]["scientificName"] == "Vulpes vulpes"
    assert "r2" not in by_media


def test_enriched_package_passes_frictionless(package: Path, shared: Path, tmp_path: Path):
    pytest.importorskip("frictionless")
    run_on(package)
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


# ---------------------------------------------------------------- the official example package

@pytest.fixture
def example(shared: Path, tmp_path: Path) -> Path:
    import shutil

    source = shared / "data" / "camtrap-dp-1.0.2" / "example"
    if not source.is_dir():
        pytest.skip("the Camtrap DP example package is not in ../shared")
    target = tmp_path / "example"
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _heron(item) -> str:
    """The example's 10 local JPEGs are a heron burst: call most of them 'bird', one 'empty', the last 'broken'."""
    number = int(item.path.stem[-4:])
    return {33: "empty", 40: "broken"}.get(number, "bird")


def test_example_package_enriched(example: Path, shared: Path, tmp_path: Path):
    before = (example / "observations.csv").read_bytes()
    human_before = [line for line in before.splitlines(keepends=True) if b",human," in line]
    summary, logs = run_on(example, rule=_heron)
    assert len(summary.manifest.items) == 10
    assert any("413 media given by URL were skipped" in line for line in logs)
    after = (example / "observations.csv").read_bytes()
    assert after.startswith(before)  # all 549 earlier observations untouched, ours appended
    assert [line for line in after.splitlines(keepends=True) if b",human," in line][:len(human_before)] == human_before
    mine = ours(read_rows(example / "observations.csv"))
    media_rows = [r for r in mine if r["observationLevel"] == "media"]
    assert len(media_rows) == 10
    assert {r["deploymentID"] for r in mine} == {"62c200a9"}
    birds = [r for r in media_rows if r["scientificName"] == "Aves"]
    assert len(birds) == 9  # the empty frame is in the bird burst: DeepFaune labels the whole sequence
    dp = json.loads((example / "datapackage.json").read_text(encoding="utf-8"))
    aves = next(t for t in dp["taxonomic"] if t["scientificName"] == "Aves")
    assert aves["vernacularNames"]["eng"] == "bird sp." and aves["vernacularNames"]["fra"] == "oiseau"
    first = tree_digest(example)
    assert run_on(example, rule=_heron)[0].written == []
    assert tree_digest(example) == first
    pytest.importorskip("frictionless")
    report = frictionless_validate(example, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_command_line_options_reach_the_host(package: Path, capsys):
    from camtrapdp_helpers import registry
    from deepfaune_plugin.cli import main

    (package / "media" / "dep1" / "fox_2.jpg").unlink()
    args = ["run", str(package), "--backend", "fake", "--lang", "en", "--no-store", "--no-report", "-q"]
    assert main(args, registry=registry()) == 1
    assert "1 media files are missing: media/dep1/fox_2.jpg" in capsys.readouterr().err
    assert main([*args, "--skip-missing"], registry=registry()) == 3  # a missing and a broken file: no result
    err = capsys.readouterr().err
    assert f"wrote {package / 'observations.csv'}" in err
    with pytest.raises(SystemExit):
        main(["run", "--help"], registry=registry())
    help_text = capsys.readouterr().out
    for option in ("--fetch-remote", "--media-cache", "--skip-missing", "--deployments-csv", "--package-metadata",
                   "--utc-offset", "--link-media"):
        assert option in help_text


def test_bird_option_names_the_bird_group(package: Path):
    rule = lambda item: "bird" if "fox" in item.path.name else outcome_from_name(item)  # noqa: E731
    run_on(package, rule=rule, bird=True)  # the fake's bird head favours group 5: passerine
    rows = [r for r in ours(read_rows(package / "observations.csv")) if r["mediaID"] == "m01"]
    assert rows[0]["scientificName"] == "Passeriformes"
    dp = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    entry = next(t for t in dp["taxonomic"] if t["scientificName"] == "Passeriformes")
    assert (entry["taxonRank"], entry["class"], entry["vernacularNames"]["fra"]) == ("order", "Aves", "passereau")
