"""Videos as DeepFaune 1.4.1 reads them: the 12 sampled frames, decoding, failures, dates.

Test videos are written here with OpenCV's VideoWriter (mp4 'mp4v', avi 'MJPG').  Every frame
carries its own number in five grey blocks (base-4 digits, levels 0/85/170/255) along its
bottom edge, so a test can tell which frame a decoder really returned.
"""
from __future__ import annotations

import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pytest

from deepfaune_plugin.engine import video
from deepfaune_plugin.engine.imageio import MediaError
from deepfaune_plugin.engine.video import (
    CONTAINER_DATE, FILE_DATE, NO_FRAMES, UNDECODABLE, UNDECODABLE_NO_PYAV,
    mp4_creation_time, mp4_track_count, read_frames, sample_frame_indices, video_date,
)

WIDTH, HEIGHT = 320, 240
RED_BGR, GREEN_BGR = (0, 0, 255), (0, 255, 0)
Blob = tuple[tuple[int, int, int], tuple[int, int, int, int]]


# ------------------------------------------------------------------------------------------------
# Test videos
# ------------------------------------------------------------------------------------------------
def frame_picture(number: int, blobs: Sequence[Blob] = ()) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    for k in range(5):
        digit = (number // 4 ** (4 - k)) % 4
        image[200:240, k * 64:(k + 1) * 64] = digit * 85
    for colour, (x1, y1, x2, y2) in blobs:
        image[y1:y2, x1:x2] = colour
    return image


def frame_number_of(image: np.ndarray) -> int:
    digits = [int(round(image[208:232, k * 64 + 12:k * 64 + 52].mean() / 85)) for k in range(5)]
    return sum(d * 4 ** (4 - k) for k, d in enumerate(digits))


def write_video(path: Path, fps: float, frames: int, blobs: Callable[[int], Sequence[Blob]] = lambda i: ()) -> Path:
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(frame_picture(i, blobs(i)))
    writer.release()
    return path


def set_mp4_creation_time(path: Path, when: datetime) -> None:
    """Write `when` into the movie header of an OpenCV-written MP4 (version 0, seconds since 1904)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"mvhd") + 4
    assert data[at] == 0
    data[at + 4:at + 8] = struct.pack(">I", int((when - datetime(1904, 1, 1)).total_seconds()))
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------
# DeepFaune's sampling formula, transcribed step by step from PredictorVideo.nextBatch (1.4.1)
# ------------------------------------------------------------------------------------------------
def deepfaune_sampling(total_frames: int, fps_property: float) -> list[int]:
    batch = 12
    fps = int(fps_property)                      # fps = int(videocap.get(5))
    n_begin = int(batch * 2 / 3 + 0.5)           # 8
    n_remain = batch - n_begin                   # 4
    lag_begin = int(fps / 3)
    while (n_begin - 1) * lag_begin > total_frames:
        lag_begin = lag_begin - 1                # shorter spacing for a short video
    begin = [k * lag_begin for k in range(0, n_begin)]
    lag_remain = int((total_frames - begin[-1]) / n_remain)
    remain = [begin[-1] + (k + 1) * lag_remain for k in range(0, n_remain)] if lag_remain > 0 else []
    return begin + remain


@pytest.mark.parametrize("fps", [15, 30])
def test_sampling_equals_deepfaune_for_1_to_60_seconds(fps):
    for seconds in range(1, 61):
        total = fps * seconds
        assert sample_frame_indices(total, float(fps)) == deepfaune_sampling(total, fps), (fps, seconds)


@pytest.mark.parametrize("total, fps, expected", [
    # 30 fps, 10 s: 8 frames 10 apart, then 4 spaced int((300 - 70) / 4) = 57 apart
    (300, 30.0, [0, 10, 20, 30, 40, 50, 60, 70, 127, 184, 241, 298]),
    (150, 15.0, [0, 5, 10, 15, 20, 25, 30, 35, 63, 91, 119, 147]),
    (1800, 30.0, [0, 10, 20, 30, 40, 50, 60, 70, 502, 934, 1366, 1798]),
    (900, 15.0, [0, 5, 10, 15, 20, 25, 30, 35, 251, 467, 683, 899]),
    # 1 s at 30 fps: 7 * 10 > 30, spacing falls to 4 (28 <= 30); int(2 / 4) = 0: no more frames
    (30, 30.0, [0, 4, 8, 12, 16, 20, 24, 28]),
    (15, 15.0, [0, 2, 4, 6, 8, 10, 12, 14]),
    # 2 s at 30 fps: spacing 8, then 57..60: frame 60 is one past the end (DeepFaune reads it as empty)
    (60, 30.0, [0, 8, 16, 24, 32, 40, 48, 56, 57, 58, 59, 60]),
    # very short: spacing 0, the first frame 8 times
    (5, 30.0, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
    (3, 30.0, [0] * 8),
    # NTSC: int(29.97) = 29, int(29 / 3) = 9
    (300, 29.97, [0, 9, 18, 27, 36, 45, 54, 63, 122, 181, 240, 299]),
    (0, 30.0, []),
    (-1, 30.0, []),
])
def test_sampling_by_hand(total, fps, expected):
    assert sample_frame_indices(total, fps) == expected
    if total > 0:
        assert deepfaune_sampling(total, fps) == expected


def test_sampling_with_odd_frame_rates():
    assert sample_frame_indices(100, 2.0) == [0] * 8 + [25, 50, 75, 100]  # int(2 / 3) = 0
    assert sample_frame_indices(100, float("nan")) == [0] * 8 + [25, 50, 75, 100]
    for fps in (7.5, 12.0, 24.0, 25.0, 29.97, 59.94, 60.0, 120.0):
        for total in (1, 2, 7, 8, 9, 20, 61, 299, 1000):
            assert sample_frame_indices(total, fps) == deepfaune_sampling(total, fps), (fps, total)


# ------------------------------------------------------------------------------------------------
# Reading frames
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "mp4_10s": write_video(root / "ten.mp4", 30, 300),
        "avi_10s": write_video(root / "ten.avi", 15, 150),
        "mp4_1s": write_video(root / "one.mp4", 30, 30),
        "avi_1s": write_video(root / "one.avi", 15, 15),
        "mp4_2s": write_video(root / "two.mp4", 30, 60),
        "mp4_empty": write_video(root / "none.mp4", 30, 0),
        "avi_empty": write_video(root / "none.avi", 30, 0),
    }


@pytest.mark.parametrize("name, fps, total", [
    ("mp4_10s", 30.0, 300), ("avi_10s", 15.0, 150), ("mp4_1s", 30.0, 30), ("avi_1s", 15.0, 15),
])
def test_reads_exactly_the_sampled_frames(clips, name, fps, total):
    clip = read_frames(clips[name])
    assert (clip.decoder, clip.fps, clip.total) == ("opencv", fps, total)
    assert clip.indices == deepfaune_sampling(total, fps)
    assert len(clip.frames) == len(clip.indices) == (12 if total >= 150 else 8)
    for number, image in zip(clip.indices, clip.frames):
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        assert frame_number_of(image) == number


def test_frame_past_the_end_is_none(clips):
    clip = read_frames(clips["mp4_2s"])
    assert clip.indices[-4:] == [57, 58, 59, 60]
    assert [frame_number_of(f) for f in clip.frames[:-1]] == clip.indices[:-1]
    assert clip.frames[-1] is None  # frame 60 of a 60-frame video


def test_explicit_indices(clips):
    clip = read_frames(clips["avi_10s"], [149, 3, 3, 77])
    assert clip.indices == [149, 3, 3, 77]
    assert [frame_number_of(f) for f in clip.frames] == [149, 3, 3, 77]


@pytest.mark.parametrize("name", ["mp4_empty", "avi_empty"])
def test_zero_frame_video_is_reported(clips, name):
    with pytest.raises(MediaError) as err:
        read_frames(clips[name])
    assert str(err.value) == NO_FRAMES


@pytest.mark.parametrize("name", ["mp4_empty", "avi_empty"])
def test_zero_frame_video_without_pyav(clips, name, monkeypatch):
    monkeypatch.setattr(video, "_pyav", lambda: None)
    with pytest.raises(MediaError) as err:
        read_frames(clips[name])
    assert str(err.value) == NO_FRAMES  # the mp4 one: a movie box without a track


def _corrupt(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return path


def _assert_undecodable(path, monkeypatch) -> None:
    """Refused with PyAV as the fallback (when installed), and with OpenCV alone, each with its reason."""
    if video._pyav() is not None:
        with pytest.raises(MediaError) as err:
            read_frames(path)
        assert str(err.value) == UNDECODABLE
    monkeypatch.setattr(video, "_pyav", lambda: None)
    with pytest.raises(MediaError) as err:
        read_frames(path)
    assert str(err.value) == UNDECODABLE_NO_PYAV


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_corrupted_bytes(tmp_path, suffix, monkeypatch):
    _assert_undecodable(_corrupt(tmp_path, suffix), monkeypatch)


def test_truncated_mp4_is_reported(clips, tmp_path, monkeypatch):
    cut = tmp_path / "cut.mp4"
    data = clips["mp4_10s"].read_bytes()
    assert data.rindex(b"moov") > len(data) // 2
    cut.write_bytes(data[:len(data) // 2])  # the movie box, at the end, is lost
    _assert_undecodable(cut, monkeypatch)


def test_missing_empty_and_folder(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, reason in ((tmp_path / "nope.mp4", "file not found"), (empty, "zero-byte file"),
                         (tmp_path, "not a file (a directory)")):
        with pytest.raises(MediaError) as err:
            read_frames(path)
        assert str(err.value) == reason


def test_pyav_fallback_gives_the_same_frames(clips, monkeypatch):
    pytest.importorskip("av")
    expected = read_frames(clips["mp4_10s"])

    def opencv_fails(path, indices):
        raise video._Failed("OpenCV cannot open it")

    monkeypatch.setattr(video, "_read_opencv", opencv_fails)
    clip = read_frames(clips["mp4_10s"])
    assert clip.decoder == "pyav" and clip.notes == ["decoded with PyAV (OpenCV cannot open it)"]
    assert (clip.indices, clip.fps, clip.total) == (expected.indices, 30.0, 300)
    for a, b in zip(clip.frames, expected.frames):
        assert frame_number_of(a) == frame_number_of(b)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


# ------------------------------------------------------------------------------------------------
# Dates
# ------------------------------------------------------------------------------------------------
def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_container_date_from_mvhd(clips, tmp_path):
    clip = tmp_path / "dated.mp4"
    clip.write_bytes(clips["mp4_1s"].read_bytes())
    when = datetime(2024, 5, 3, 6, 0, 7)
    set_mp4_creation_time(clip, when)
    assert mp4_creation_time(clip) == when
    assert video_date(clip) == (when, CONTAINER_DATE)
    assert read_frames(clip).total == 30  # still a valid video


def test_mvhd_version_1_and_64_bit_box_sizes(tmp_path):
    seconds = int((datetime(2031, 12, 24, 23, 59, 59) - datetime(1904, 1, 1)).total_seconds())
    mvhd = _box(b"mvhd", bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", seconds, seconds, 1000, 0) + bytes(80))
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 1000) + bytes(1000)  # size 1: 64-bit size follows
    path = tmp_path / "v1.mov"
    path.write_bytes(_box(b"ftyp", b"qt  \x00\x00\x00\x00") + mdat + _box(b"moov", mvhd + _box(b"trak", b"")))
    assert mp4_creation_time(path) == datetime(2031, 12, 24, 23, 59, 59)
    assert mp4_track_count(path) == 1


def test_unset_creation_time_falls_back_to_file_date(clips, tmp_path):
    clip = tmp_path / "unset.mp4"
    clip.write_bytes(clips["mp4_1s"].read_bytes())  # OpenCV writes creation_time 0
    stamp = datetime(2023, 7, 14, 21, 3, 9).timestamp()
    os.utime(clip, (stamp, stamp))
    assert mp4_creation_time(clip) is None
    assert video_date(clip) == (datetime(2023, 7, 14, 21, 3, 9), FILE_DATE)


def test_avi_has_no_container_date(clips, tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(clips["avi_1s"].read_bytes())
    stamp = datetime(2022, 1, 2, 3, 4, 5).timestamp()
    os.utime(clip, (stamp, stamp))
    assert mp4_creation_time(clip) is None and mp4_track_count(clip) is None
    assert video_date(clip) == (datetime(2022, 1, 2, 3, 4, 5), FILE_DATE)
    assert video_date(tmp_path / "gone.avi") == (None, "")


def test_mkv_date_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        out.metadata["creation_time"] = "2024-05-03T06:00:07.000000Z"
        stream = out.add_stream("mjpeg", rate=15)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuvj420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(frame_picture(i), format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert video_date(path) == (datetime(2024, 5, 3, 6, 0, 7), CONTAINER_DATE)
    clip = read_frames(path)
    assert clip.indices == deepfaune_sampling(clip.total, clip.fps)
    assert [frame_number_of(f) for f in clip.frames if f is not None] == [i for i in clip.indices if i < 20]
