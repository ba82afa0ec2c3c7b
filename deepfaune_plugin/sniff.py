"""What a file's first bytes say it is: a download is kept only when they name an image or video format we read
(a server's error page, a login form or a JSON answer is never cached as a media file)."""
from __future__ import annotations

from .engine.imageio import image_format
from .engine.video import _TOP_LEVEL as _ISO_BOXES  # MP4, MOV, M4V: the first box's type, at bytes 4-8

_VIDEO_SIGNATURES = (
    (b"\x1a\x45\xdf\xa3", "Matroska"),  # MKV, WebM
    (b"\x00\x00\x01\xba", "MPEG"),  # program stream
    (b"\x00\x00\x01\xb3", "MPEG"),  # video elementary stream
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF"),
)


def video_format(head: bytes) -> str | None:
    """The video container named by a file's first bytes, or None."""
    if head[4:8] in _ISO_BOXES:
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if len(head) > 188 and head[0] == head[188] == 0x47:
        return "MPEG-TS"
    for magic, name in _VIDEO_SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def media_format(head: bytes) -> str | None:
    """The image or video format named by a file's first bytes (189 of them when the file has that many: an
    MPEG transport stream's second sync byte is at 188), or None: not a media file we read."""
    return image_format(head) or video_format(head)
