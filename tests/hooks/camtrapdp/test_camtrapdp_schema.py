"""The Camtrap DP validator (no frictionless needed) and the byte-keeping CSV reader."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtrapdp_helpers import descriptor
from deepfaune_plugin.hooks.camtrapdp.package import PackageError, join_table, parse_table
from deepfaune_plugin.hooks.camtrapdp.schema import (MEDIA, OBSERVATIONS, format_datetime, parse_datetime,
                                                     validate_descriptor, validate_foreign_keys, validate_rows)

HEADER = [f.name for f in OBSERVATIONS]


def obs(**values) -> dict[str, str]:
    row = {"observationID": "o1", "deploymentID": "d1", "mediaID": "m1", "eventStart": "2024-05-03T06:00:00+02:00",
           "eventEnd": "2024-05-03T06:00:00Z", "observationLevel": "media", "observationType": "animal"}
    row.update(values)
    return {h: row.get(h, "") for h in HEADER}


def messages(issues) -> list[str]:
    return [str(i) for i in issues]


def test_a_valid_row_has_no_issue():
    assert validate_rows("o.csv", OBSERVATIONS, HEADER, [obs(count="2", bboxX="0", bboxWidth="1",
                                                             classificationProbability="0.5")]) == []


@pytest.mark.parametrize("field, value, message", [
    ("observationType", "animals", "'animals' is not one of animal, human, vehicle, blank, unknown, unclassified"),
    ("observationLevel", "", "required value is missing"),
    ("observationID", "NA", "required value is missing"),  # NA is a missing value in Camtrap DP
    ("count", "0", "0 is below the minimum 1"),
    ("count", "1.0", "'1.0' is not an integer"),
    ("bboxWidth", "0", "0 is below the minimum 1e-15"),
    ("classificationProbability", "1.01", "1.01 is above the maximum 1"),
    ("classificationProbability", "high", "'high' is not a number"),
    ("eventStart", "2024-05-03T06:00:00", "is not a datetime"),  # the offset is required
    ("eventEnd", "2024-05-03 06:00:00+02:00", "is not a datetime"),
    ("classificationMethod", "Machine", "is not one of human, machine"),
])
def test_field_checks(field, value, message):
    (issue,) = validate_rows("o.csv", OBSERVATIONS, HEADER, [obs(**{field: value})])
    assert issue.row == 1 and issue.field == field and message in issue.message


def test_unique_key_and_only_rows():
    rows = [obs(), obs(count="0"), obs(observationID="o2", count="0")]
    assert messages(validate_rows("o.csv", OBSERVATIONS, HEADER, rows, only_rows={3})) == [
        "o.csv row 3 count: 0 is below the minimum 1"]  # row 2's faults are not this run's
    assert "o.csv row 2 observationID: 'o1' is already used by row 1" in messages(
        validate_rows("o.csv", OBSERVATIONS, HEADER, rows, only_rows={2}))


def test_columns_missing_extra_or_out_of_order():
    header = [h for h in HEADER if h != "sex"] + ["notes"]
    assert messages(validate_rows("o.csv", OBSERVATIONS, header, [])) == [
        "o.csv sex: column is missing (every field of the schema is expected)",
        "o.csv: columns not in the schema: notes"]
    swapped = HEADER[1:2] + HEADER[:1] + HEADER[2:]
    assert messages(validate_rows("o.csv", OBSERVATIONS, swapped, [])) == ["o.csv: columns are not in the schema's order"]


def test_media_file_path_pattern():
    header = [f.name for f in MEDIA]
    base = {"mediaID": "m1", "deploymentID": "d1", "timestamp": "2024-05-03T06:00:00Z", "filePublic": "true",
            "fileMediatype": "image/jpeg"}
    for path, ok in [("media/a.jpg", True), ("https://x.org/a", True), ("../a.jpg", False), ("a/../b.jpg", False),
                     (".hidden/a.jpg", False), ("/a.jpg", False), ("~/a.jpg", False)]:
        issues = validate_rows("m.csv", MEDIA, header, [{**base, "filePath": path}])
        assert (issues == []) is ok, path
    (issue,) = validate_rows("m.csv", MEDIA, header, [{**base, "filePath": "a.jpg", "filePublic": "yes"}])
    assert issue.message == "'yes' is not a boolean (true/false)"


def test_foreign_keys():
    rows = [obs(), obs(observationID="o2", deploymentID="d9", mediaID="")]
    assert messages(validate_foreign_keys("o.csv", "observations", rows, {"deployments": {"d1"}, "media": {"m1"}})) == [
        "o.csv row 2 deploymentID: 'd9' is not a deploymentID of deployments"]


def test_descriptor_checks():
    assert validate_descriptor(descriptor()) == []
    bad = descriptor()
    del bad["created"]
    bad["project"]["observationLevel"] = ["sequence"]
    bad["project"]["samplingDesign"] = "random"
    bad["contributors"][0]["role"] = "author"
    bad["taxonomic"].append({"scientificName": "Aves", "taxonRank": "clade", "vernacularNames": {"en": "bird"}})
    bad["temporal"]["end"] = "31/05/2024"
    assert messages(validate_descriptor(bad)) == [
        "datapackage.json created: required property is missing",
        "datapackage.json contributors[0].role: 'author' is not one of contact, principalInvestigator, "
        "rightsHolder, publisher, contributor",
        "datapackage.json project.samplingDesign: 'random' is not one of simpleRandom, systematicRandom, "
        "clusteredRandom, experimental, targeted, opportunistic",
        "datapackage.json project.observationLevel: must be a list of 'media' and/or 'event'",
        "datapackage.json temporal.end: '31/05/2024' is not a date YYYY-MM-DD",
        "datapackage.json taxonomic[1].taxonRank: 'clade' is not one of kingdom, phylum, class, order, family, "
        "genus, species, subspecies",
        "datapackage.json taxonomic[1].vernacularNames: keys must be ISO 639-3 codes (3 lowercase letters), values text",
    ]


def test_datetimes_round_trip():
    value = parse_datetime("2021-04-11T20:43:09+01:00")
    assert format_datetime(value) == "2021-04-11T20:43:09+01:00"
    assert format_datetime(parse_datetime("2021-04-11T20:43:09Z")) == "2021-04-11T20:43:09Z"


def test_csv_records_keep_their_exact_text():
    text = '\ufeffa,b\r\n1,"two\nlines, and a comma"\r\n\r\n3,"say ""hi"""\r\n4,x'
    table = parse_table(text, "t.csv")
    assert table.bom == "\ufeff" and table.newline == "\r\n" and table.header == ["a", "b"]
    assert table.rows == [{"a": "1", "b": "two\nlines, and a comma"}, {"a": "3", "b": 'say "hi"'}, {"a": "4", "b": "x"}]
    assert table.texts == ['1,"two\nlines, and a comma"\r\n\r\n', '3,"say ""hi"""\r\n', "4,x"]
    assert join_table(table, table.texts) == text + "\r\n"  # only a final line end is added
    assert table.serialise({"a": "5", "b": "c,d"}) == '5,"c,d"\r\n'


def test_csv_faults_are_clear():
    with pytest.raises(PackageError, match=r"t.csv line 3: 3 values for 2 columns"):
        parse_table("a,b\n1,2\n1,2,3\n", "t.csv")
    with pytest.raises(PackageError, match="t.csv: not a readable CSV file"):
        parse_table('a,b\n1,"open\n', "t.csv")


def test_own_validator_agrees_with_frictionless_on_the_example(shared: Path):
    """Both validators accept the official example; ours needs no library."""
    import csv

    example = shared / "data" / "camtrap-dp-1.0.2" / "example"
    dp = json.loads((example / "datapackage.json").read_text(encoding="utf-8"))
    assert validate_descriptor(dp) == []
    for name, fields in (("media", MEDIA), ("observations", OBSERVATIONS)):
        with open(example / f"{name}.csv", newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert validate_rows(f"{name}.csv", fields, reader.fieldnames, list(reader)) == []


@pytest.mark.parametrize("field, value", [("count", "0"), ("eventEnd", "2024-05-03T06:00:00"),
                                          ("observationType", "bird"), ("bboxY", "-0.1")])
def test_own_validator_and_frictionless_reject_the_same_cell(shared: Path, tmp_path: Path, field, value):
    pytest.importorskip("frictionless")
    import csv
    import io

    from camtrapdp_helpers import frictionless_validate, make_package

    package = make_package(tmp_path / "pkg")
    with open(package / "observations.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows[1][field] = value
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (package / "observations.csv").write_text(buf.getvalue(), encoding="utf-8")
    ours = [(i.row, i.field) for i in validate_rows("observations.csv", OBSERVATIONS, HEADER, rows)]
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    theirs = [(n - 1, f) for n, f in report.flatten(["rowNumber", "fieldName"])]  # frictionless counts the header
    assert ours == theirs == [(2, field)]
