"""Read a video the way DeepFaune 1.4.1 does: which frames, how they are decoded, what date it has.

DeepFaune (predictTools.PredictorVideo) looks at 12 frames of a video: 8 from the start,
int(fps/3) frames apart (fps itself truncated to an int), the spacing reduced one frame at a
time until those 8 fit in the video, then 4 more evenly spaced over the rest.  It seeks each one
with OpenCV (CAP_PROP_POS_FRAMES, then read), so we do exactly that.  A frame OpenCV cannot
return is an empty row for DeepFaune; here it is a frame with a failure, which no pool counts
either.  A video OpenCV cannot open is "empty" for DeepFaune; here PyAV (optional) gets a second
try, then the video fails with a reason.

Dates: DeepFaune asks hachoir for the creation date of .mov/.mp4/.mkv files only, i.e. the MP4
movie header's `creation_time`, taken as is (no time-zone conversion).  We read that atom
ourselves (any ISO-BMFF file: mp4, mov, m4v...), ask PyAV for the other containers (mkv), and
fall back to the file's modification time, flagged as such.

What FFmpeg prints while OpenCV or PyAV decode ("[h264 @ 0x...] error while decoding MB") is caught
(engine/quiet.py) and becomes a note of the video (its `warning`), or the details of its failure.
"""
from __future__ import annotations

import math
import os
import stat
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence, Union

import cv2
import numpy as np

from ..paths import not_regular
from ..types import CONTAINER_DATE, FILE_DATE
from .imageio import MediaError
from .quiet import decoder_messages, summarise

FRAMES_PER_VIDEO = 12  # DeepFaune's video BATCH_SIZE
FRAMES_AT_START = int(FRAMES_PER_VIDEO * 2 / 3 + 0.5)  # 8, as DeepFaune computes it
FRAMES_IN_REST = FRAMES_PER_VIDEO - FRAMES_AT_START  # 4

NO_FRAMES = "video has no frames"
UNDECODABLE = "cannot decode video (OpenCV and PyAV failed)"
UNDECODABLE_NO_PYAV = "cannot decode video (OpenCV failed; PyAV, the fallback decoder, is not installed)"


Indices = Union[Sequence[int], Callable[[int, float], Sequence[int]]]


def sample_frame_indices(total_frames: int, fps: float) -> list[int]:
    """DeepFaune's 12 frame numbers for a video of `total_frames` frames at `fps` (repeats kept).

    Short videos repeat frames (spacing 0) and may get only the first 8; the last one may be
    `total_frames` itself, one past the end, which DeepFaune then reads as an empty frame.
    """
    if total_frames <= 0:
        return []
    rate = int(fps) if math.isfinite(fps) else 0
    lag = max(int(rate / 3), 0)
    while (FRAMES_AT_START - 1) * lag > total_frames:
        lag -= 1
    start = [k * lag for k in range(FRAMES_AT_START)]
    rest_lag = int((total_frames - start[-1]) / FRAMES_IN_REST)
    rest = [start[-1] + (k + 1) * rest_lag for k in range(FRAMES_IN_REST)] if rest_lag > 0 else []
    return start + rest


@dataclass
class VideoFrames:
    """The sampled frames of a video: `frames[i]` is frame `indices[i]` (BGR uint8) or None if unreadable."""

    indices: list[int]
    frames: list[np.ndarray | None]
    fps: float  # as the container states it (DeepFaune samples with int(fps))
    total: int  # frame count as the decoder reports it
    decoder: str  # "opencv" or "pyav"
    notes: list[str] = field(default_factory=list)


class _Failed(Exception):
    """One decoder could not give a single frame; `no_frames` when it opened the video and found none."""

    def __init__(self, reason: str, no_frames: bool = False):
        super().__init__(reason)
        self.no_frames = no_frames


def _wanted(indices: Indices, total: int, fps: float) -> list[int]:
    return list(indices(total, fps) if callable(indices) else indices)


def _read_opencv(path: Path, indices: Indices) -> VideoFrames:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise _Failed("OpenCV cannot open it")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if total <= 0:
            raise _Failed("OpenCV finds no frames", no_frames=True)
        wanted = _wanted(indices, total, fps)
        decoded: dict[int, np.ndarray | None] = {}
        for index in wanted:
            if index not in decoded:  # a repeated frame is the same picture: read it once
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = cap.read()
                decoded[index] = frame if ok and frame is not None and frame.size else None
        if wanted and all(v is None for v in decoded.values()):
            raise _Failed("OpenCV decodes none of its frames")
        return VideoFrames(wanted, [decoded[i] for i in wanted], fps, total, "opencv")
    finally:
        cap.release()


def _pyav():
    try:
        import av  # optional: pip install deepfaune-plugin[video]
    except ImportError:
        return None
    return av


def _pyav_rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _read_pyav(av, path: Path, indices: Indices) -> VideoFrames:
    """Decode from the start (no seeking): slower than OpenCV's seeks but exact for any container."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _Failed("PyAV finds no video stream", no_frames=True)
            stream = container.streams.video[0]
            fps = _pyav_rate(stream)
            total = int(stream.frames or 0)
            if total <= 0:  # containers without a frame count (mkv...): count the packets
                total = sum(1 for packet in container.demux(stream) if packet.size)
        if total <= 0:
            raise _Failed("PyAV finds no frames", no_frames=True)
        wanted = _wanted(indices, total, fps)
        targets = set(wanted)
        decoded: dict[int, np.ndarray] = {}
        last = max(targets, default=-1)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            try:
                for number, frame in enumerate(container.decode(stream)):
                    if number in targets:
                        decoded[number] = frame.to_ndarray(format="bgr24")
                    if number >= last:
                        break
            except getattr(av, "FFmpegError", OSError):  # a damaged tail: keep the frames decoded before it
                pass
    except _Failed:
        raise
    except Exception as err:  # PyAV raises its own errors and OSError subclasses alike
        raise _Failed(f"PyAV: {err}") from None
    if wanted and not decoded:
        raise _Failed("PyAV decodes none of its frames")
    return VideoFrames(wanted, [decoded.get(i) for i in wanted], fps, total, "pyav")


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError("file not found", path) from None
    except OSError as err:
        raise MediaError(f"cannot read: {err.strerror or err}", path) from None
    if path.is_dir():
        raise MediaError("not a file (a directory)", path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO named x.mp4 would make the decoder wait forever
        raise MediaError(not_regular(path) or "not a regular file", path)
    if st.st_size == 0:
        raise MediaError("zero-byte file", path)
    if not os.access(path, os.R_OK):
        raise MediaError("cannot read: permission denied", path)


def read_frames(path: str | os.PathLike, indices: Indices = sample_frame_indices) -> VideoFrames:
    """The frames `indices` names (a list, or a function of (total frames, fps); DeepFaune's by default).

    OpenCV first, as DeepFaune; PyAV only when OpenCV gives no frame at all.  Raises MediaError
    with NO_FRAMES or UNDECODABLE (UNDECODABLE_NO_PYAV without PyAV) when neither gives one.
    """
    path = Path(path)
    _check_file(path)
    messages: list[str] = []
    try:
        with decoder_messages() as messages:
            video = _read_opencv(path, indices)
        return _noted(video, messages)
    except _Failed as err:
        first = err
    details: tuple[str, ...] = (summarise(messages),) if messages else ()
    av = _pyav()
    if av is None:
        no_frames = first.no_frames or mp4_track_count(path) == 0
        raise MediaError(NO_FRAMES if no_frames else UNDECODABLE_NO_PYAV, path, details)
    try:
        with decoder_messages() as messages:
            video = _read_pyav(av, path, indices)
    except _Failed as err:
        details += (summarise(messages),) if messages else ()
        raise MediaError(NO_FRAMES if err.no_frames else UNDECODABLE, path, details) from None
    video.notes.append(f"decoded with PyAV ({first})")
    video.notes.extend(details)
    return _noted(video, messages)


def _noted(video: VideoFrames, messages: list[str]) -> VideoFrames:
    if messages:
        video.notes.append(summarise(messages))
    return video


# ------------------------------------------------------------------------------------------------
# Dates
# ------------------------------------------------------------------------------------------------
_MAC_EPOCH = datetime(1904, 1, 1)
_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"meta"}


def _boxes(fh, start: int, end: int):
    """(type, payload offset, payload end) of the ISO-BMFF boxes between start and end."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return
            size, header = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _moov(fh) -> list[tuple[bytes, int, int]] | None:
    """The boxes inside `moov` of an ISO-BMFF file (mp4, mov, m4v, 3gp...), or None if it is not one."""
    end = os.fstat(fh.fileno()).st_size
    top = _boxes(fh, 0, end)
    first = next(top, None)
    if first is None or first[0] not in _TOP_LEVEL:
        return None
    for kind, begin, stop in [first, *top]:
        if kind == b"moov":
            return list(_boxes(fh, begin, stop))
    return None


def mp4_track_count(path: str | os.PathLike) -> int | None:
    """Tracks (`trak` boxes) of an MP4/MOV file; None when it is not one or has no movie box.

    0 is what a recorder stopped before its first frame leaves: a movie header and no track.
    """
    try:
        with open(path, "rb") as fh:
            boxes = _moov(fh)
    except OSError:
        return None
    return None if boxes is None else sum(kind == b"trak" for kind, _, _ in boxes)


def mp4_creation_time(path: str | os.PathLike) -> datetime | None:
    """The `creation_time` of an MP4/MOV movie header (moov/mvhd), as written (no time zone), or None.

    Seconds since 1904-01-01 (32-bit in a version-0 header, 64-bit in version 1); 0, which a
    camera that never set it writes, counts as no date.
    """
    try:
        with open(path, "rb") as fh:
            header = next(((b, e) for kind, b, e in _moov(fh) or [] if kind == b"mvhd"), None)
            if header is None:
                return None
            fh.seek(header[0])
            data = fh.read(min(header[1] - header[0], 12))
    except OSError:
        return None
    if len(data) >= 12 and data[0] == 1:
        seconds = struct.unpack(">Q", data[4:12])[0]
    elif len(data) >= 8 and data[0] == 0:
        seconds = struct.unpack(">I", data[4:8])[0]
    else:
        return None
    if seconds == 0:
        return None
    try:
        return _MAC_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _pyav_creation_time(path: Path) -> datetime | None:
    av = _pyav()
    if av is None:
        return None
    try:
        with av.open(str(path)) as container:
            text = container.metadata.get("creation_time") or container.metadata.get("CREATION_TIME")
            if not text and container.streams.video:
                text = container.streams.video[0].metadata.get("creation_time")
    except Exception:
        return None
    if not text:
        return None
    try:
        date = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return date.replace(tzinfo=None)  # as written, like the MP4 header: no time-zone conversion


def video_date(path: str | os.PathLike) -> tuple[datetime | None, str]:
    """(date, source): the container's creation time (CONTAINER_DATE), else the file's
    modification time (FILE_DATE, whole seconds, local time), else (None, "")."""
    path = Path(path)
    date = mp4_creation_time(path)
    if date is None:
        date = _pyav_creation_time(path)
    if date is not None:
        return date, CONTAINER_DATE
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0), FILE_DATE
    except (OSError, ValueError, OverflowError):
        return None, ""
