"""A small Wildlife Insights export, written the way Wildlife Insights writes one (its published column names)."""
from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

IMAGES_HEADER = ["project_id", "deployment_id", "image_id", "filename", "location", "is_blank", "identified_by",
                 "wi_taxon_id", "class", "order", "family", "genus", "species", "common_name", "uncertainty",
                 "timestamp", "number_of_objects", "age", "sex", "animal_recognizable", "individual_id",
                 "individual_animal_notes", "behavior", "highlighted", "markings", "cv_confidence", "license",
                 "bounding_boxes"]
DEPLOYMENTS_HEADER = ["project_id", "deployment_id", "placename", "longitude", "latitude", "start_date", "end_date",
                      "camera_id", "quiet_period", "feature_type", "recorded_by", "remarks"]


def jpeg(path: Path, shade: int = 90, date: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (160, 120), (shade, 120, 60))
    exif = Image.Exif()
    if date:
        exif.get_ifd(0x8769)[0x9003] = date  # DateTimeOriginal
    image.save(path, "JPEG", exif=exif.tobytes() if date else b"")


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def image_row(image_id: str, deployment: str, filename: str, timestamp: str, **fields: str) -> dict[str, str]:
    row = dict.fromkeys(IMAGES_HEADER, "")
    row.update(project_id="2004252", deployment_id=deployment, image_id=image_id, filename=filename,
               location=f"gs://cameratraps/project_2004252/deployment_{deployment}/{image_id}.jpg",
               timestamp=timestamp, is_blank="0", highlighted="false", license="CC-BY-NC")
    row.update(fields)
    return row


def make_export(root: Path) -> Path:
    """Two deployments, five images: one a person identified (a badger), one Wildlife Insights' AI identified,
    three unidentified; the media under <deployment_id>/<filename>. Hours apart: each image is its own sequence."""
    export = root / "wi_export"
    export.mkdir()
    rows = [
        image_row("img-a", "DEP1", "a.jpg", "2021-08-26 10:00:00"),
        image_row("img-b", "DEP1", "b.jpg", "2021-08-26 12:00:00"),
        image_row("img-c", "DEP1", "c.jpg", "2021-08-26 14:00:00", identified_by="Elildo Carvalho",
                  wi_taxon_id="", **{"class": "Mammalia"}, order="Carnivora", family="Mustelidae", genus="Meles",
                  species="meles", common_name="Eurasian Badger", number_of_objects="2", uncertainty="Pretty sure"),
        image_row("img-d", "DEP2", "d.jpg", "2021-09-15 23:12:00", identified_by="Computer vision",
                  **{"class": "Mammalia"}, order="Carnivora", family="Felidae", genus="Panthera", species="onca",
                  common_name="Jaguar", number_of_objects="1", cv_confidence="0.71"),
        image_row("img-e", "DEP2", "e.jpg", "2021-09-16 03:30:00"),
    ]
    write_csv(export / "images_2004252.csv", IMAGES_HEADER, rows)
    write_csv(export / "deployments.csv", DEPLOYMENTS_HEADER, [
        {"project_id": "2004252", "deployment_id": "DEP1", "placename": "site-a", "longitude": "-62.94",
         "latitude": "-8.57", "start_date": "2021-08-20 00:00:00", "end_date": "2021-09-20 00:00:00",
         "camera_id": "2008799", "quiet_period": "0", "feature_type": "None", "recorded_by": "Elildo", "remarks": ""},
        {"project_id": "2004252", "deployment_id": "DEP2", "placename": "site-b", "longitude": "-62.96",
         "latitude": "-8.55", "start_date": "2021-09-01 00:00:00", "end_date": "2021-10-01 00:00:00",
         "camera_id": "2038808", "quiet_period": "3", "feature_type": "None", "recorded_by": "Elildo",
         "remarks": ""}])
    write_csv(export / "cameras.csv", ["project_id", "camera_id", "camera_name", "make", "model", "serial_number",
                                       "year_purchased"],
              [{"project_id": "2004252", "camera_id": "2008799", "camera_name": "B1", "make": "Bushnell",
                "model": "Trophy Cam HD", "serial_number": "B1", "year_purchased": "2016"},
               {"project_id": "2004252", "camera_id": "2038808", "camera_name": "B2", "make": "Bushnell",
                "model": "Trophy Cam HD", "serial_number": "B2", "year_purchased": "2018"}])
    write_csv(export / "projects.csv", ["project_id", "project_name", "project_short_name"],
              [{"project_id": "2004252", "project_name": "Test Project", "project_short_name": "TP"}])
    for n, row in enumerate(rows):
        jpeg(export / row["deployment_id"] / row["filename"], shade=40 * n)
    return export
