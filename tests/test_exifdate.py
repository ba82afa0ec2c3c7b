"""EXIF DateTimeOriginal (tag 36867 in the Exif IFD), read with exifread."""
from __future__ import annotations

from datetime import datetime

import pytest
from PIL import Image

from deepfaune_plugin.exifdate import parse_exif_datetime, read_exif_date

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 36867
DATETIME = 306  # IFD0 "DateTime" (file modification): not what DeepFaune reads


def jpeg(path, original=None, ifd0_datetime=None, size=(64, 48)):
    exif = Image.Exif()
    if ifd0_datetime is not None:
        exif[DATETIME] = ifd0_datetime
    if original is not None:
        exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = original
    Image.new("RGB", size, (120, 80, 40)).save(path, "JPEG", exif=exif.tobytes())
    return path


def test_reads_datetime_original(tmp_path):
    path = jpeg(tmp_path / "a.jpg", original="2023:07:14 05:32:09")
    assert read_exif_date(path) == datetime(2023, 7, 14, 5, 32, 9)
    with Image.open(path) as im:  # the very tag DeepFaune reads with PIL's _getexif()[36867]
        assert im._getexif()[DATETIME_ORIGINAL] == "2023:07:14 05:32:09"


def test_original_wins_over_ifd0_datetime(tmp_path):
    path = jpeg(tmp_path / "b.jpg", original="2023:07:14 05:32:09", ifd0_datetime="2024:01:01 00:00:00")
    assert read_exif_date(path) == datetime(2023, 7, 14, 5, 32, 9)


def test_only_ifd0_datetime_is_no_date(tmp_path):
    path = jpeg(tmp_path / "c.jpg", ifd0_datetime="2024:01:01 00:00:00")
    assert read_exif_date(path) is None


def test_no_exif_is_none(tmp_path):
    path = tmp_path / "d.jpg"
    Image.new("RGB", (16, 16)).save(path, "JPEG")
    assert read_exif_date(path) is None
    png = tmp_path / "e.png"
    Image.new("RGB", (16, 16)).save(png, "PNG")
    assert read_exif_date(png) is None


def test_unparsable_and_zero_dates_are_none(tmp_path):
    assert read_exif_date(jpeg(tmp_path / "f.jpg", original="0000:00:00 00:00:00")) is None
    assert read_exif_date(jpeg(tmp_path / "g.jpg", original="not a date")) is None


def test_not_an_image_is_none_and_missing_file_raises(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage-garbage")
    assert read_exif_date(junk) is None
    with pytest.raises(OSError):
        read_exif_date(tmp_path / "absent.jpg")


def test_large_jpeg_is_fast(tmp_path):
    # the tag sits in the header: reading it must not decode 12 MP of pixels
    import time
    path = jpeg(tmp_path / "big.jpg", original="2022:02:02 02:02:02", size=(4000, 3000))
    start = time.perf_counter()
    for _ in range(20):
        assert read_exif_date(path) == datetime(2022, 2, 2, 2, 2, 2)
    assert (time.perf_counter() - start) / 20 < 0.02


@pytest.mark.parametrize("text, expected", [
    ("2021:12:31 23:59:59", datetime(2021, 12, 31, 23, 59, 59)),
    ("2021:12:31 23:59:59\x00\x00", datetime(2021, 12, 31, 23, 59, 59)),
    (" 2021:12:31 23:59:59 ", datetime(2021, 12, 31, 23, 59, 59)),
    (b"2021:12:31 23:59:59\x00", datetime(2021, 12, 31, 23, 59, 59)),
    ("0000:00:00 00:00:00", None),
    ("    :  :     :  :  ", None),
    ("2021-12-31 23:59:59", None),
    ("2021:13:31 23:59:59", None),
    ("", None),
    (None, None),
])
def test_parse_exif_datetime(text, expected):
    assert parse_exif_datetime(text) == expected
