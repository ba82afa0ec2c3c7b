"""Small JPEGs for the review page, made once per file and kept in a cache folder beside it.

A thumbnail is named by a hash of what it depends on (the file's relative path, size and
modification time, the box drawn, whether people are blurred), so a second report of the same
files reuses it and a changed file or box gets a new one.  Pixels are read as the detector read
them (EXIF orientation applied), so the boxes, in the detector's pixels, land where they belong.
A video shows the frame its box was found in (its key frame), sought the way the detector read it.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from ..atomic import write_bytes_atomic as write_atomic
from ..paths import UnsafeFolderError, own_folder
from ..types import ANIMAL, PERSON, VEHICLE, MediaItem, RawResult

THUMB_PX = 320
PREVIEW_PX = 1600
CACHE_VERSION = 1  # bump when the drawing changes, so old thumbnails are not reused
BLUR_KERNEL = 151  # DeepFaune's box filter for human blurring, at full resolution
#: Formats a browser shows as they are; anything else gets a JPEG preview for the full view.
BROWSER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
BOX_COLOURS = {ANIMAL: (255, 152, 0), PERSON: (229, 57, 53), VEHICLE: (30, 136, 229)}  # RGB

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Job:
    """One file to render: where it is, the box to draw and the person boxes to blur (original pixels)."""

    relpath: str
    path: Path
    width: int  # the detector's image size, which the boxes refer to
    height: int
    box: Box | None = None
    category: int = ANIMAL
    people: tuple[Box, ...] = ()
    video: bool = False
    frame: int = 0  # a video's frame to show: the one the box (and the people) belong to

    @classmethod
    def of(cls, item: MediaItem, raw: RawResult | None) -> "Job":
        if raw is None or raw.failure:
            return cls(item.relpath, Path(item.path), 0, 0, video=item.is_video)
        sel = raw.selected_detection
        people = tuple(d.box for d in raw.detections if d.category == PERSON)
        return cls(item.relpath, Path(item.path), raw.width, raw.height, sel.box if sel else None,
                   sel.category if sel else ANIMAL, people, item.is_video, raw.frame_number or 0)


def cache_name(job: Job, kind: str, blur: bool) -> str:
    """File name of a job's thumbnail ("t") or preview ("p"): a hash of everything the picture depends on."""
    try:
        st = job.path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    box = ",".join(f"{v:.1f}" for v in job.box) if job.box else "-"
    # only pictures with people differ when blurring, so the others are shared by both kinds of report
    people = ";".join(",".join(f"{v:.1f}" for v in b) for b in job.people) if blur and job.people else "-"
    parts = [job.relpath, stamp, kind, box, str(job.category), people, str(CACHE_VERSION)]
    if job.frame:  # frame 0 keeps the name thumbnails had before videos showed their key frame
        parts.append(f"frame {job.frame}")
    text = "\0".join(parts)
    return f"{kind}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:24]}.jpg"


def _load(path: Path, size: int, video: bool, frame: int = 0) -> Image.Image:
    """RGB pixels, EXIF orientation applied; JPEGs decoded at the smallest DCT scale still >= size.

    A video's `frame` is read as the detector read it (OpenCV seek, PyAV when OpenCV cannot)."""
    if video:
        from ..engine.imageio import MediaError
        from ..engine.video import read_frames

        try:
            pixels = read_frames(path, [frame]).frames[0]
        except MediaError as err:
            raise OSError(str(err)) from err
        if pixels is None:
            raise OSError(f"cannot read frame {frame} of the video")
        return Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            return ImageOps.exif_transpose(img).convert("RGB")
    except Exception:  # Pillow cannot (or a Pillow plugin misbehaves): decode as the detector does
        from ..engine.imageio import MediaError, read_image

        try:
            return Image.fromarray(cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB))
        except MediaError as err:
            raise OSError(str(err)) from err


def blur_people(image: Image.Image, boxes: Iterable[Box], sx: float, sy: float) -> Image.Image:
    """Blur each box (original pixels, scaled by sx, sy) with DeepFaune's box filter scaled alike (at least 9 px)."""
    pixels = np.asarray(image).copy()
    h, w = pixels.shape[:2]
    k = max(9, int(round(BLUR_KERNEL * max(sx, sy))) | 1)
    for x1, y1, x2, y2 in boxes:
        a, b = max(0, int(x1 * sx)), max(0, int(y1 * sy))
        c, d = min(w, int(np.ceil(x2 * sx))), min(h, int(np.ceil(y2 * sy)))
        if c > a and d > b:
            pixels[b:d, a:c] = cv2.blur(pixels[b:d, a:c], (k, k))
    return Image.fromarray(pixels)


def render(job: Job, size: int, blur: bool, draw_box: bool) -> Image.Image:
    """The file at most `size` px on its long side, people blurred if asked, the selected box drawn if asked."""
    image = _load(job.path, size, job.video, job.frame)
    if max(image.size) > size:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    # the boxes are in the detector's pixels; its image may differ in size from what was decoded here
    sx = image.width / job.width if job.width else 0.0
    sy = image.height / job.height if job.height else 0.0
    if blur and job.people and sx:
        image = blur_people(image, job.people, sx, sy)
    if draw_box and job.box and sx:
        x1, y1, x2, y2 = job.box
        line = max(2, round(max(image.size) / 110))
        ImageDraw.Draw(image).rectangle(
            [x1 * sx, y1 * sy, x2 * sx - 1, y2 * sy - 1], outline=BOX_COLOURS.get(job.category, (255, 152, 0)), width=line)
    return image


def _save(image: Image.Image, target: Path, quality: int) -> None:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    write_atomic(target, buffer.getvalue())


class ThumbCache:
    """Makes (or finds) the thumbnail and, where needed, the preview of each file."""

    def __init__(self, folder: Path, blur: bool = False, workers: int | None = None):
        self.folder = Path(folder)
        self.blur = blur
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))

    def needs_preview(self, job: Job) -> bool:
        """A preview replaces the original on click when people must be blurred (for a video: a blurred
        still of its key frame) or when a browser cannot show the image's format."""
        if self.blur and job.people:
            return True
        return not job.video and job.path.suffix.lower() not in BROWSER_SUFFIXES

    def make(self, job: Job) -> tuple[Path | None, Path | None]:
        """(thumbnail, preview or None); (None, None) when the file cannot be read."""
        try:
            thumb = self.folder / cache_name(job, "t", self.blur)
            if not thumb.is_file():
                _save(render(job, THUMB_PX, self.blur, draw_box=True), thumb, quality=80)
            preview = None
            if self.needs_preview(job):
                preview = self.folder / cache_name(job, "p", self.blur)
                if not preview.is_file():
                    _save(render(job, PREVIEW_PX, self.blur, draw_box=False), preview, quality=85)
            return thumb, preview
        except Exception:  # one file's thumbnail never breaks the page
            return None, None

    def large(self, job: Job) -> Path | None:
        """The picture at PREVIEW_PX with its box drawn (`deepfaune review`'s full view); None when unreadable."""
        try:
            target = self.folder / cache_name(job, "l", self.blur)
            if not target.is_file():
                _save(render(job, PREVIEW_PX, self.blur, draw_box=True), target, quality=85)
            return target
        except Exception:  # one file's picture never breaks the page
            return None

    def make_all(self, jobs: list[Job]) -> dict[str, tuple[Path | None, Path | None]]:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:  # a real folder of ours, never a link that would carry the thumbnails elsewhere
            own_folder(self.folder.parent, self.folder.name)
        except UnsafeFolderError as err:
            raise OSError(str(err)) from None
        if self.workers == 1 or len(jobs) < 2:
            return {job.relpath: self.make(job) for job in jobs}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="thumbs") as pool:
            return dict(zip((job.relpath for job in jobs), pool.map(self.make, jobs)))
