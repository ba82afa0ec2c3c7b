"""Reading image files: the pixels DeepFaune's detector sees, or a reason a user can act on."""
from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from deepfaune_plugin.engine.imageio import (MediaError, decode_image, image_format, jpeg_is_complete,
                                             read_image)


def jpeg_bytes(w=40, h=20, colour=(200, 30, 10), exif=None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if exif is not None else {}
    Image.new("RGB", (w, h), colour).save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def reason(path) -> str:
    with pytest.raises(MediaError) as err:
        read_image(path)
    assert str(err.value) == err.value.reason and err.value.path == str(path)
    return err.value.reason


def test_jpeg_reads_as_bgr(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes())
    img = read_image(path)
    assert img.shape == (20, 40, 3) and img.dtype == np.uint8
    b, g, r = img[10, 20].tolist()
    assert abs(r - 200) <= 3 and abs(g - 30) <= 3 and abs(b - 10) <= 3


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert reason(path) == "zero-byte file"


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("field notes, not a photo\n")
    assert reason(path) == "not an image (unrecognised format)"


def test_truncated_jpeg_decodes_the_part_present(tmp_path):
    data = jpeg_bytes(200, 150)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    decoded = decode_image(path)
    assert decoded.warnings == ("truncated JPEG: decoded the part present",)
    assert decoded.image.shape == (150, 200, 3)
    assert abs(int(decoded.image[0, 0, 2]) - 200) <= 3  # the top is the photo (red 200)...
    assert decoded.image[-1, -1].tolist() == [128, 128, 128]  # ...the missing bottom libjpeg's mid-grey


def test_jpeg_cut_before_its_pixels_fails(tmp_path):
    data = jpeg_bytes(200, 150)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: data.find(b"\xff\xda") + 4])  # headers only
    assert reason(path) == "truncated JPEG: no image data present"


def test_jpeg_with_trailing_zero_padding_is_fine(tmp_path):
    path = tmp_path / "padded.jpg"
    path.write_bytes(jpeg_bytes() + b"\x00" * 512)
    assert read_image(path).shape == (20, 40, 3)


def test_jpeg_end_marker_check():
    assert jpeg_is_complete(np.frombuffer(b"\xff\xd8 data \xff\xd9", np.uint8))
    assert jpeg_is_complete(np.frombuffer(b"\xff\xd8 data \xff\xd9\x00\x00", np.uint8))
    assert not jpeg_is_complete(np.frombuffer(b"\xff\xd8 data \xff", np.uint8))
    assert not jpeg_is_complete(np.frombuffer(b"\x00\x00", np.uint8))


def test_missing_file_and_directory(tmp_path):
    assert reason(tmp_path / "nope.jpg") == "file vanished during the run"
    assert reason(tmp_path) == "not a file (a directory)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_permission_denied(tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(jpeg_bytes())
    path.chmod(0)
    try:
        assert reason(path) == "cannot read: permission denied"
    finally:
        path.chmod(0o644)


def test_corrupt_png_names_its_format(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 100)
    assert reason(path) == "corrupt or unsupported PNG image (cannot decode)"


def test_png_with_alpha_becomes_bgr(tmp_path):
    path = tmp_path / "a.png"
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # red, half transparent
    Image.fromarray(rgba).save(path)
    img = read_image(path)
    assert img.shape == (6, 8, 3)
    assert img[0, 0].tolist() == [0, 0, 255]  # alpha dropped, BGR order


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((5, 7), 77, np.uint8)).save(path)
    img = read_image(path)
    assert img.shape == (5, 7, 3) and img[2, 3].tolist() == [77, 77, 77]


def test_16_bit_png_becomes_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), np.full((4, 4, 3), 0x1234, np.uint16))
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    assert img[0, 0].tolist() == [0x12, 0x12, 0x12]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    path.write_bytes(jpeg_bytes(40, 20, exif=exif))
    assert read_image(path).shape == (40, 20, 3)  # stored 40 wide, shown 20 wide


def test_non_ascii_file_name(tmp_path):
    folder = tmp_path / "caméra_été"
    folder.mkdir()
    path = folder / "chevreuil_Ø_日本.jpg"
    path.write_bytes(jpeg_bytes())
    assert read_image(path).shape == (20, 40, 3)


def test_image_format_sniffing():
    assert image_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert image_format(b"II*\x00") == "TIFF"
    assert image_format(b"hello") is None
