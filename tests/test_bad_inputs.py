"""Whatever a memory card holds: each bad file is a clear per-file failure or warning, the run goes on.

The pixels must be those of DeepFaune's `cv2.imread` (it decodes truncated JPEGs, CMYK, 16-bit, GIF,
EXIF-rotated files); paths from manifests must stay inside their root; a full disk leaves the
previous outputs intact.
"""
from __future__ import annotations

import errno
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import deepfaune_plugin
import deepfaune_plugin.hooks
from deepfaune_plugin.cli import main
from deepfaune_plugin.engine import imageio
from deepfaune_plugin.engine.imageio import TRUNCATED_WARNING, MediaError, decode_image, header_size
from deepfaune_plugin.models.installed import ModelFileError, InstalledModels
from deepfaune_plugin.paths import UnsafePathError, is_plain_name, plain_parts, safe_relative
from deepfaune_plugin.plugins import default_registry
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.types import Problem
from deepfaune_plugin.walk import iter_media, printable

GREY, RED, GREEN = (120, 120, 120), (255, 0, 0), (0, 255, 0)  # RGB
BLOB = (0.375, 0.1, 0.75, 0.45)  # x1, y1, x2, y2 as fractions: a red "animal" for the stand-in detector
POSIX_BYTES_NAMES = os.name == "posix" and sys.platform != "darwin"  # macOS refuses non-UTF-8 names


def scene(width=800, height=600, colour=RED, blob=BLOB) -> np.ndarray:
    """RGB grey background with one saturated blob (the stand-in detector's animal/person marker)."""
    rgb = np.full((height, width, 3), GREY, np.uint8)
    x1, y1, x2, y2 = blob
    rgb[int(y1 * height):int(y2 * height), int(x1 * width):int(x2 * width)] = colour
    return rgb


def jpeg(rgb: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with a frame header claiming another size (what a corrupt or hostile file does)."""
    sof = data.find(b"\xff\xc0")
    return data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9:]


# --- the formats a card may hold: the pixels of cv2.imread, 8-bit BGR --------------------------------

def _pil(fmt: str, mode: str = "RGB", **kw):
    def make(path: Path) -> None:
        Image.fromarray(scene()).convert(mode).save(path, fmt, **kw)
    return make


def _gif(path: Path) -> None:
    frames = [Image.fromarray(scene()), Image.fromarray(scene(colour=GREEN))]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)


def _cv2_16bit(path: Path) -> None:
    assert cv2.imwrite(str(path), scene()[..., ::-1].astype(np.uint16) * 257)


def _rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path.write_bytes(jpeg(scene(), exif=exif.tobytes()))


FORMATS = {  # file name -> writer; every one must decode like cv2.imread and keep the red blob red
    "a.png": _pil("PNG"),
    "a.tif": _pil("TIFF"),
    "a.bmp": _pil("BMP"),
    "a.gif": _gif,  # first frame red, second green
    "a.webp": _pil("WEBP", lossless=True),
    "cmyk.jpg": _pil("JPEG", "CMYK"),
    "grey.png": _pil("PNG", "L"),
    "deep16.png": _cv2_16bit,
    "deep16.tif": _cv2_16bit,
    "rotated.jpg": _rotated,
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_formats_decode_as_cv2_imread(tmp_path, name):
    path = tmp_path / name
    FORMATS[name](path)
    decoded = decode_image(path)
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)  # what DeepFaune calls
    assert decoded.image.dtype == np.uint8 and decoded.image.shape == expected.shape
    assert np.array_equal(decoded.image, expected) and decoded.warnings == ()
    shape = (800, 600, 3) if name == "rotated.jpg" else (600, 800, 3)
    assert decoded.image.shape == shape
    b, g, r = (int(v) for v in decoded.image[int(0.3 * 600), int(0.5 * 800)])
    if name == "grey.png":
        assert b == g == r == 76  # ITU-R 601 luma of pure red
    elif name != "rotated.jpg":
        assert r > 230 and g < 30 and b < 30, (b, g, r)


@pytest.mark.parametrize("cut", [0.35, 0.6, 0.95])
def test_truncated_jpeg_is_cv2_imread_pixel_for_pixel(tmp_path, cut):
    data = jpeg(scene())
    path = write(tmp_path / "cut.jpg", data[:int(len(data) * cut)])
    decoded = decode_image(path)
    assert decoded.warnings == (TRUNCATED_WARNING,) == ("truncated JPEG: decoded the part present",)
    assert np.array_equal(decoded.image, cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert decoded.image[-1].tolist() == [[128, 128, 128]] * 800  # the missing bottom: libjpeg's fill


def test_truncated_progressive_jpeg_is_blurred_but_whole(tmp_path):
    data = jpeg(scene(), progressive=True)
    path = write(tmp_path / "cut.jpg", data[:len(data) // 2])
    decoded = decode_image(path)
    assert decoded.warnings == (TRUNCATED_WARNING,)
    assert np.array_equal(decoded.image, cv2.imread(str(path), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("keep, reason", [
    (lambda d: d[:d.find(b"\xff\xda") - 4], "truncated JPEG: no image data present"),  # cut in the headers
    (lambda d: d[:d.find(b"\xff\xda") + 14], "truncated JPEG: no image data present"),  # scan header only
    (lambda d: d[:3], "truncated JPEG: no image data present"),
])
def test_truncated_jpeg_with_nothing_to_show_fails(tmp_path, keep, reason):
    path = write(tmp_path / "cut.jpg", keep(jpeg(scene())))
    with pytest.raises(MediaError, match=re.escape(reason)):
        decode_image(path)


def test_header_size_reads_jpeg_and_png_without_decoding():
    data = jpeg(scene(), exif=Image.Exif().tobytes())
    assert header_size(data, "JPEG") == (800, 600)
    assert header_size(with_jpeg_size(data, 40000, 40000), "JPEG") == (40000, 40000)
    buf = io.BytesIO()
    Image.new("RGB", (7, 5)).save(buf, "PNG")
    assert header_size(buf.getvalue(), "PNG") == (7, 5)
    assert header_size(b"BM....", "BMP") is None


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    """12000 x 9000 (108 MP, 324 MB as BGR) with a red blob: large, but a real camera could write it."""
    bgr = scene(12000, 9000)[..., ::-1]
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return write(tmp_path_factory.mktemp("huge") / "huge.jpg", data.tobytes())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak memory from /proc/self/status")
def test_huge_image_decodes_and_a_huger_header_fails_fast_in_little_memory(huge_jpeg, tmp_path):
    bomb = write(tmp_path / "bomb.jpg", with_jpeg_size(jpeg(scene()), 40000, 40000))
    probe = (  # a fresh process: VmHWM is its own peak (ru_maxrss would include pytest's, inherited at fork)
        "import sys, time\n"
        "from deepfaune_plugin.engine.imageio import MediaError, decode_image\n"
        "def peak():\n"
        "    return next(int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "base, t = peak(), time.monotonic()\n"
        "try:\n"
        "    decode_image(sys.argv[2])\n"
        "except MediaError as err:\n"
        "    print(err.reason)\n"
        "print(time.monotonic() - t, peak() - base)\n"
        "shape = decode_image(sys.argv[1]).image.shape\n"
        "print(shape, peak() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(huge_jpeg), str(bomb)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "image too large: 40000×40000 pixels (limit 268,435,456)"
    seconds, bomb_mb = out[1].split()
    assert float(seconds) < 0.5 and int(bomb_mb) < 20  # refused from the header: nothing allocated
    shape, huge_mb = out[2].rsplit(" ", 1)
    assert shape == "(9000, 12000, 3)"
    # 324 MB of pixels; OpenCV's decoder peaks at twice that (cv2.imread too), and we add no copy of our own
    assert 300 < int(huge_mb) < 700


def deny_reading(monkeypatch, name: str = "locked.jpg") -> None:
    """Reading `name` fails with EACCES (root reads every file whatever its mode, so chmod cannot show it)."""
    real = np.fromfile

    def fromfile(file, *args, **kwargs):
        if Path(file).name == name:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", fromfile)


def test_permission_denied_reason(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.jpg", jpeg(scene()))
    deny_reading(monkeypatch)
    with pytest.raises(MediaError, match="^cannot read: permission denied$"):
        decode_image(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file whatever its mode")
def test_permission_denied_for_real(tmp_path):
    path = write(tmp_path / "locked.jpg", jpeg(scene()))
    path.chmod(0)
    try:
        with pytest.raises(MediaError, match="^cannot read: permission denied$"):
            decode_image(path)
    finally:
        path.chmod(0o644)


def test_broken_link_and_vanished_file_reasons(tmp_path):
    (tmp_path / "link.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(MediaError, match=r"^broken symbolic link \(its target does not exist\)$"):
        decode_image(tmp_path / "link.jpg")
    with pytest.raises(MediaError, match="^file vanished during the run$"):
        decode_image(tmp_path / "gone.jpg")


def test_io_error_and_oversized_file_reasons(tmp_path, monkeypatch):
    path = write(tmp_path / "card.jpg", jpeg(scene()))
    limit = imageio.MAX_FILE_BYTES
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 100)
    with pytest.raises(MediaError, match=r"^file too large for an image \(0\.0 GiB; limit 0 GiB\)$"):
        decode_image(path)
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", limit)

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(np, "fromfile", failing)
    with pytest.raises(MediaError, match="^cannot read: Input/output error$"):
        decode_image(path)


# --- folder listing -----------------------------------------------------------------------------------

@pytest.mark.skipif(not POSIX_BYTES_NAMES, reason="needs a file system that takes any bytes as a name")
def test_walk_escapes_non_utf8_names_and_refuses_a_clash(tmp_path):
    root = os.fsencode(tmp_path)
    os.mkdir(os.path.join(root, b"cam\xff"))
    for name in (b"cam\xff/chamois\xe9.jpg", b"cam\xff/ok.jpg", b"chamois\xe9.jpg", b"chamois\\xe9.jpg"):
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(b"x")
    problems: list[Problem] = []
    listed = list(iter_media(tmp_path, problems=problems))
    assert [rel for _, rel in listed] == ["chamois\\xe9.jpg", "cam\\xff/chamois\\xe9.jpg", "cam\\xff/ok.jpg"]
    assert [p.exists() for p, _ in listed] == [True, True, True]  # the real paths still open
    assert os.fsencode(listed[0][0]).endswith(b"/chamois\\xe9.jpg")  # the real file of that name, not the Latin-1 one
    assert problems == [
        Problem("chamois\\xe9.jpg", "file name is not valid UTF-8 and, written with \\xNN, is another file's; skipped"),
        Problem("cam\\xff/chamois\\xe9.jpg", "file name is not valid UTF-8; written with \\xNN for its odd bytes", 0),
        Problem("cam\\xff/ok.jpg", "file name is not valid UTF-8; written with \\xNN for its odd bytes", 0),
    ]


def test_printable_names():
    assert printable("chevreuil_Ø_日本.jpg") == "chevreuil_Ø_日本.jpg"
    assert printable(os.fsdecode(b"chamois\xe9.jpg") if os.name == "posix" else "chamois\udce9.jpg") == "chamois\\xe9.jpg"
    assert printable("odd\ud800.jpg") == "odd\\ud800.jpg"  # an unpaired UTF-16 surrogate (Windows)


# --- manifest paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("../outside.jpg", "climbs out of its folder ('..')"),
    ("cam1/../../outside.jpg", "climbs out of its folder ('..')"),
    ("cam1\\..\\..\\outside.jpg", "climbs out of its folder ('..')"),
    ("cam1/.../x.jpg", "climbs out of its folder ('..')"),  # Windows reads "..." as ".."
    ("cam1/.. /x.jpg", "climbs out of its folder ('..')"),
    ("/etc/passwd", "an absolute path (must be relative to the manifest's folder)"),
    ("\\\\server\\share\\x.jpg", "an absolute path (must be relative to the manifest's folder)"),
    ("\\Windows\\x.jpg", "an absolute path (must be relative to the manifest's folder)"),
    ("C:\\Windows\\x.jpg", "names a drive (an absolute Windows path)"),
    ("c:x.jpg", "names a drive (an absolute Windows path)"),
    ("D:/photos/x.jpg", "names a drive (an absolute Windows path)"),
    ("cam1/x.jpg\x00.png", "contains a NUL character"),
    ("file:///etc/passwd", "a URL, not a path relative to the manifest"),
    ("https://example.org/x.jpg", "a URL, not a path relative to the manifest"),
])
def test_safe_relative_refuses_paths_leaving_the_root(tmp_path, text, reason):
    with pytest.raises(UnsafePathError) as err:
        safe_relative(tmp_path, text, manifest="deployment/media.csv")
    assert err.value.reason == reason and err.value.entry == text
    assert str(err.value) == f"deployment/media.csv: entry {text!r} refused: {reason}"


@pytest.mark.parametrize("text, parts", [
    ("cam1/IMG_0001.JPG", ("cam1", "IMG_0001.JPG")),
    ("Station1\\Camera2\\IMG_0001.JPG", ("Station1", "Camera2", "IMG_0001.JPG")),  # Timelapse writes backslashes
    ("./cam1//x.jpg", ("cam1", "x.jpg")),
    ("..hidden/x..jpg", ("..hidden", "x..jpg")),  # dots inside names are names
    ("", ()),  # Timelapse's RelativePath of files in the root folder
    ("caméra été/chevreuil_Ø_日本.jpg", ("caméra été", "chevreuil_Ø_日本.jpg")),
])
def test_safe_relative_accepts_relative_paths(tmp_path, text, parts):
    assert plain_parts(text) == parts
    assert safe_relative(tmp_path, text) == tmp_path.joinpath(*parts)


def test_safe_relative_follows_symlinks_only_inside_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "inside").symlink_to(root / "real")
    (root / "escape").symlink_to(outside)
    assert safe_relative(root, "inside/x.jpg") == root / "inside" / "x.jpg"  # the name as written
    with pytest.raises(UnsafePathError, match=r"^m\.ddb: entry 'escape/x\.jpg' refused: leads outside .* through "
                                              r"a symbolic link \(to .*outside/x\.jpg\)$"):
        safe_relative(root, "escape/x.jpg", manifest="m.ddb")


def test_plain_names():
    assert is_plain_name("deepfaune-vit-1.4.onnx")
    assert not any(is_plain_name(n) for n in ("../x.onnx", "/abs/x.onnx", "sub/x.onnx", "a\\x.onnx", ".", "..",
                                              "", "C:x.onnx", "./x.onnx"))


# --- models: only plain names inside the models directory ------------------------------------------

@pytest.mark.parametrize("name", ["../classifier.onnx", "/tmp/classifier.onnx", "sub/../../classifier.onnx",
                                  "..\\classifier.onnx", "C:\\models\\classifier.onnx"])
@pytest.mark.parametrize("where", ["files", "versions"])
def test_models_manifest_naming_a_file_outside_its_directory_is_refused(standin_models, tmp_path, name, where):
    manifest = json.loads((standin_models / "deepfaune-models.json").read_text(encoding="utf-8"))
    classifier = manifest["versions"]["1.4"]["classifier"]
    if where == "files":
        manifest["files"][name] = manifest["files"].pop(classifier)
    manifest["versions"]["1.4"]["classifier"] = name
    (tmp_path / "deepfaune-models.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelFileError) as err:
        InstalledModels(tmp_path).file_for("1.4", "classifier")
    assert str(err.value) == (f"{tmp_path / 'deepfaune-models.json'}: file name {name!r} refused: model files "
                              "must be plain names inside the models directory")
    assert InstalledModels(standin_models).verify() == []  # the untouched manifest is fine


def test_yaml_and_json_are_parsed_safely():
    package = Path(deepfaune_plugin.__file__).parent
    sources = [*package.rglob("*.py"), *Path(deepfaune_plugin.hooks.__file__).parent.rglob("*.py")]
    unsafe = re.compile(r"yaml\.(load|load_all|unsafe_load|full_load)\s*\(|yaml\.(Unsafe|Full)?Loader\b"
                        r"|\bpickle\.loads?\(|(?<![.\w])eval\(")  # eval(), not model.eval()
    found = [f"{p.name}:{n}" for p in sources for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if unsafe.search(line)]
    assert len(sources) > 20 and found == []


# --- the folder workflow, end to end ---------------------------------------------------------------

def _season(src: Path, huge: Path) -> dict[str, str]:
    """Every kind of bad file in one folder tree; returns {relpath: expected failure ('' = decoded)}."""
    expect = {}

    def put(rel: str, data: bytes, failure: str = "") -> None:
        write(src / rel, data)
        expect[rel] = failure

    good = jpeg(scene())
    put("siteA/IMG_0001.JPG", good)
    put("siteB/IMG_0001.JPG", jpeg(scene(colour=GREEN)))  # same name, other folder: a person
    put("bad/zero.jpg", b"", "zero-byte file")
    put("bad/notes.jpg", b"field notes, not a photo\n", "not an image (unrecognised format)")
    put("bad/truncated.jpg", good[:len(good) * 3 // 5])
    put("bad/headers_only.jpg", good[:good.find(b"\xff\xda")], "truncated JPEG: no image data present")
    put("bad/bomb.jpg", with_jpeg_size(good, 40000, 40000), "image too large: 40000×40000 pixels (limit 268,435,456)")
    put("bad/corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x01" * 100, "corrupt or unsupported PNG image (cannot decode)")
    put("bad/locked.jpg", good, "cannot read: permission denied")
    put("bad/vanish.jpg", good, "file vanished during the run")
    for name, make in FORMATS.items():
        path = src / "formats" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        expect[f"formats/{name}"] = ""
    put("caméra été/chevreuil_Ø_日本.jpg", good)
    (src / "huge").mkdir()
    os.link(huge, src / "huge" / "huge.jpg")
    expect["huge/huge.jpg"] = ""
    (src / "bad" / "link.jpg").symlink_to(src / "bad" / "nowhere.jpg")  # broken: a warning, no row
    return expect


@pytest.fixture
def hostile(monkeypatch):
    """A permission-denied file and a file deleted once listed."""
    deny_reading(monkeypatch)
    folder = type(default_registry().host("folder"))
    read = folder.read

    def read_then_delete(self, source, options):
        manifest = read(self, source, options)

        def listed_then_deleted(blocks):  # the file is gone between its listing and its decoding
            for block in blocks:
                for item in block:
                    if item.path.name == "vanish.jpg" and item.path.exists():
                        item.path.unlink()
                yield block

        manifest.stream = listed_then_deleted(manifest.stream)
        return manifest

    monkeypatch.setattr(folder, "read", read_then_delete)


def _run(src: Path, out: Path, models: Path, *extra: str) -> int:
    return main(["run", str(src), "--models-dir", str(models), "--output", str(out), "-q", *extra])


def _table(out: Path) -> pd.DataFrame:
    with open(out, encoding="utf-8") as fh:  # valid UTF-8 throughout, whatever the file names
        return pd.read_csv(fh, keep_default_na=False).set_index("filename")


def test_folder_run_over_every_bad_input(tmp_path, standin_models, huge_jpeg, hostile, capsys):
    src, out = tmp_path / "season", tmp_path / "results" / "deepfaune.csv"
    expect = _season(src, huge_jpeg)
    assert _run(src, out, standin_models) == 3  # finished, but the bad files have no result
    err = capsys.readouterr().err
    table = _table(out)

    assert sorted(table.index) == sorted(expect)  # one row per file, the broken link only warned about
    assert "warning: bad/link.jpg: broken symbolic link (its target does not exist); skipped" in err
    record = json.loads((out.parent / "deepfaune-run.json").read_text(encoding="utf-8"))
    assert {"file": "bad/link.jpg", "reason": "broken symbolic link (its target does not exist); skipped",
            "skipped": 1} in record["problems"]
    for rel, failure in expect.items():
        row = table.loc[rel]
        assert row["failure"] == failure, rel
        assert (row["prediction"] == "") == bool(failure), rel  # a failed file has no label, a decoded one has
        warning = {"bad/truncated.jpg": TRUNCATED_WARNING,  # what OpenCV printed is the file's, not the terminal's
                   "bad/corrupt.png": "decoder said: user chunk data is too large; IHDR chunk shall be first. "
                                      "This data may be broken or malformed."}.get(rel, "")
        assert row["warning"] == warning, rel
        assert not failure or f"{rel}: {failure}" in err

    # decoded files reached the detector with their real pixels: the red blob is one animal where it was drawn
    animals = [rel for rel in expect if not expect[rel] and rel not in ("siteB/IMG_0001.JPG", "formats/grey.png")]
    assert table.loc[animals, "count"].tolist() == [1] * len(animals)
    assert table.loc["siteB/IMG_0001.JPG", ["count", "humancount", "prediction"]].tolist() == [0, 1, "humain"]
    assert table.loc["siteA/IMG_0001.JPG", "seqnum"] != table.loc["siteB/IMG_0001.JPG", "seqnum"]
    boxes = table[["bbox_x", "bbox_y", "bbox_width", "bbox_height"]].replace("", np.nan).astype(float)
    reference = boxes.loc["siteA/IMG_0001.JPG"].to_numpy()  # the same scene as a plain 800 x 600 JPEG
    for rel in [*(f"formats/{n}" for n in FORMATS if n not in ("rotated.jpg", "grey.png")), "huge/huge.jpg",
                "caméra été/chevreuil_Ø_日本.jpg"]:
        assert np.allclose(boxes.loc[rel], reference, atol=0.002), rel
    assert np.allclose(boxes.loc["bad/truncated.jpg"], reference, atol=0.04)  # the grey fill shifts it a little
    x, y, w, h = reference  # EXIF orientation 6 (90 degrees clockwise): the box turned with the image
    assert np.allclose(boxes.loc["formats/rotated.jpg"], [1 - y - h, x, h, w], atol=0.002)


@pytest.mark.skipif(not POSIX_BYTES_NAMES, reason="needs a file system that takes any bytes as a name")
def test_non_utf8_file_name_end_to_end(tmp_path, standin_models, capsys):
    src, out = tmp_path / "card", tmp_path / "results" / "deepfaune.csv"
    src.mkdir()
    for name in (b"chamois\xe9.jpg", "chevreuil_Ø.jpg".encode()):
        with open(os.path.join(os.fsencode(src), name), "wb") as fh:
            fh.write(jpeg(scene()))
    assert _run(src, out, standin_models) == 0
    err = capsys.readouterr().err
    table = _table(out)
    assert sorted(table.index) == ["chamois\\xe9.jpg", "chevreuil_Ø.jpg"]
    assert table["failure"].tolist() == ["", ""] and table["count"].tolist() == [1, 1]
    assert "warning: chamois\\xe9.jpg: file name is not valid UTF-8; written with \\xNN for its odd bytes" in err
    page = (out.parent / "deepfaune-report.html").read_text(encoding="utf-8")
    assert '"f":"chamois\\\\xe9.jpg"' in page  # the name as the table writes it (a JSON string here)
    assert '"h":"../card/chamois%E9.jpg"' in page  # and a link to the real file: its bytes, percent-encoded


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_full_disk_keeps_previous_outputs_and_the_next_run_resumes(tmp_path, standin_models, monkeypatch, capsys):
    src, out = tmp_path / "card", tmp_path / "results" / "deepfaune.csv"
    good = jpeg(scene())
    write(src / "IMG_0001.JPG", good)
    write(src / "IMG_0002.JPG", good[:len(good) * 3 // 5])
    assert _run(src, out, standin_models) == 0
    first = _table(out)
    assert first["warning"].tolist() == ["", TRUNCATED_WARNING]
    before, listing = _outputs(out.parent), sorted(p.name for p in out.parent.iterdir())
    assert {"deepfaune.csv", "deepfaune-run.json", "deepfaune-report.html"} <= set(before)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    to_csv = pd.DataFrame.to_csv
    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    capsys.readouterr()
    assert _run(src, out, standin_models, "--threshold", "0.5") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert _outputs(out.parent) == before  # byte for byte: the table, the run record, the review page
    assert sorted(p.name for p in out.parent.iterdir()) == listing  # and no temporary file left behind

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)  # space again
    assert _run(src, out, standin_models) == 0
    assert "2 of 2 files already computed" in capsys.readouterr().err  # from the result store, warnings and all
    assert _table(out).equals(first)


def test_full_disk_under_the_result_store_stops_cleanly_and_the_next_run_resumes(tmp_path, standin_models,
                                                                                  monkeypatch, capsys):
    src, out = tmp_path / "card", tmp_path / "results" / "deepfaune.csv"
    good = jpeg(scene())
    write(src / "IMG_0001.JPG", good)
    write(src / "IMG_0002.JPG", good)
    assert _run(src, out, standin_models) == 0
    before = _outputs(out.parent)
    write(src / "IMG_0003.JPG", jpeg(scene(width=640)))  # a new file (new content): computed, to be stored

    def store_disk_full(self, fingerprint, batch, **options):
        raise sqlite3.OperationalError("database or disk is full")

    save = ResultStore.save
    monkeypatch.setattr(ResultStore, "save", store_disk_full)
    capsys.readouterr()
    assert _run(src, out, standin_models, "--threshold", "0.5") == 1
    err = capsys.readouterr().err
    assert "database or disk is full" in err and "free some space" in err and "Traceback" not in err
    assert _outputs(out.parent) == before  # the table, record and page of the last good run, byte for byte

    monkeypatch.setattr(ResultStore, "save", save)
    assert _run(src, out, standin_models) == 0
    assert "2 of 3 files already computed" in capsys.readouterr().err
    assert len(_table(out)) == 3
