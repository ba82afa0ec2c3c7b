"""--fetch-remote: media given by an http(s) URL, downloaded into a cache inside the package.

A package is a file anyone can send, so its URLs and names are untrusted:

- the cache is a real folder inside the package (a `.deepfaune_cache` link to elsewhere is refused),
  opened once without following links; every file is created in it with O_EXCL | O_NOFOLLOW and renamed
  within it, so no write can land outside it;
- a cached name is the mediaID's safe characters (or a hash) plus a media suffix from a fixed list: never
  a suffix from fileName or the URL that could plant code (``sitecustomize.py``);
- a file is cached only when complete: as long as the Content-Length said, with the sha256 the URL gives
  (``...#sha256=<hex>``, as pip reads it) when it gives one; each cached file keeps a note of its URL, size
  and hash beside it, and a different URL, a different size or no note means it is fetched again;
- only public addresses are fetched by default: every address the host name resolves to is checked, the
  connection goes to the checked address and each redirect is checked again (safe_http); a lab's own network
  needs --fetch-allow-private;
- an answer is kept only when it is a media file: a Content-Type other than image/*, video/* or
  application/octet-stream, or first bytes that are not an image or video format we read, is refused;
- each download has an overall deadline and a size cap (a trickling or endless server is cut off), fetches
  run a few at a time, and a host that cannot be reached (offline) is tried once: its other media are
  skipped at once and said in one line.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from deepfaune_plugin import api
from deepfaune_plugin.api import MEDIA_SUFFIXES, UnsafeFolderError, open_folder, own_folder

from deepfaune_plugin.hooks.camtrapdp.package import MEDIATYPE_SUFFIX, MediaRow, PackageError
from deepfaune_plugin.hooks.camtrapdp.safe_http import AddressRefused, open_url

CACHE_DIR = ".deepfaune_cache"
NOTE_SUFFIX = ".source.json"  # beside each cached file: the URL, size and sha256 it was fetched as
CHUNK = 1 << 16
_SHA256 = re.compile(r"(?:^|&)sha256=([0-9a-fA-F]{64})(?:&|$)")


class FetchFailed(OSError):
    """One media that could not be fetched; the message says why (it is skipped)."""


class Unreachable(FetchFailed):
    """The server cannot be reached at all (no network, no such host, refused): its other media are not tried."""


class Refused(FetchFailed):
    """A host at an address a package may not make us reach (safe_http): nothing was sent to it."""

    def __init__(self, host: str, why: str):
        super().__init__(why)
        self.host = host


#: Content-Types a media file may come as (a missing one too): anything else (an HTML error or login page,
#: JSON) is refused before its body is read.
MEDIA_TYPES = ("image/", "video/")
BINARY_TYPES = {"application/octet-stream", "binary/octet-stream"}
HEAD_BYTES = 189  # enough for every signature api.media_format knows


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one download may take, how many run at once, and whether a lab's own network
    may be reached (settable: --fetch-*)."""

    deadline_s: float = 300.0  # the whole file, not one read
    read_timeout_s: float = 30.0  # one read; never longer than what is left of the deadline
    max_bytes: int = 2_000_000_000  # camera-trap videos stay well under this
    workers: int = 4
    allow_private: bool = False  # --fetch-allow-private: private and loopback addresses too

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "FetchLimits":
        def number(name: str, default: float, kind=float) -> Any:
            value = options.get(name.replace("-", "_"))
            if value in (None, ""):
                return default
            try:
                parsed = kind(value)
            except (TypeError, ValueError):
                parsed = None
            if parsed is None or not parsed > 0 or parsed != parsed or parsed == float("inf"):
                raise PackageError(f"--{name} {value!r}: a positive number is needed")
            return parsed

        base = cls()
        deadline = number("fetch-timeout", base.deadline_s)
        return cls(deadline_s=deadline, read_timeout_s=min(base.read_timeout_s, deadline),
                   max_bytes=int(number("fetch-max-mb", base.max_bytes / 1e6) * 1e6),
                   workers=int(number("fetch-workers", base.workers, int)),
                   allow_private=bool(options.get("fetch_allow_private")))


def media_suffix(row: MediaRow) -> str:
    """A media suffix for a cached file: from fileName or the URL only when it is one we read as media,
    else from fileMediatype, else .jpg; never a suffix an untrusted field chose freely (.py, .pth, .so)."""
    for candidate in (row.file_name, urllib.parse.urlparse(row.file_path).path):
        suffix = Path(candidate or "").suffix.lower()
        if suffix in MEDIA_SUFFIXES:
            return suffix
    return MEDIATYPE_SUFFIX.get(row.mediatype.lower(), ".jpg")


def cache_name(row: MediaRow) -> str:
    """A file name for a fetched media: its mediaID when that is filesystem-safe, else a hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", row.media_id)
    if safe != row.media_id or safe.startswith(".") or safe.endswith(NOTE_SUFFIX):
        safe = f"{safe.lstrip('.')[:40]}-{hashlib.sha1(row.media_id.encode()).hexdigest()[:10]}"
    return safe + media_suffix(row)


def expected_sha256(url: str) -> str | None:
    """The sha256 a URL's fragment gives (``#sha256=<hex>``), lower case, or None."""
    found = _SHA256.search(urllib.parse.urlparse(url).fragment)
    return found.group(1).lower() if found else None


Opener = Callable[[str, float], Any]


def opener_for(limits: FetchLimits) -> Opener:
    """The checked opener (safe_http.open_url) with the addresses `limits` allows."""
    return partial(open_url, allow_private=limits.allow_private)


def not_media(content_type: str | None) -> str | None:
    """Why an answer's Content-Type says it is no media file ("text/html answer"), or None."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if not kind or kind.startswith(MEDIA_TYPES) or kind in BINARY_TYPES:
        return None
    return f"{kind} answer, not an image or video"


def _check_head(head: bytes) -> None:
    if api.media_format(head) is None:
        raise FetchFailed(f"not an image or video (its first bytes are {head[:8]!r})")


_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN,
                       errno.EHOSTDOWN, errno.EADDRNOTAVAIL}


def _unreachable(err: BaseException) -> bool:
    """A failure to reach the server at all (not an HTTP answer, not a broken transfer)."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, socket.gaierror):
        return True
    if isinstance(err, urllib.error.URLError) and isinstance(reason, TimeoutError):
        return True  # no connection within the timeout (urlopen wraps only the connect and send steps)
    return isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNOS


_AT = {os.open, os.stat, os.unlink, os.replace} <= os.supports_dir_fd  # POSIX; Windows names full paths


class MediaCache:
    """The cache folder, held open: files are made and renamed relative to its descriptor (where the
    platform offers that; Windows has neither descriptors of folders nor symbolic links by default)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self.fd = folder, fd

    @classmethod
    def open(cls, root: Path, chosen: str | os.PathLike | None) -> "MediaCache":
        """<root>/.deepfaune_cache (a real folder, never a link), or the folder the user chose."""
        try:
            if chosen:
                folder = Path(chosen).resolve()  # the user's own choice: a link they made is theirs
                folder.mkdir(parents=True, exist_ok=True)
            else:
                folder = own_folder(root, CACHE_DIR)
            return cls(folder, open_folder(folder) if _AT else None)
        except UnsafeFolderError as err:
            raise PackageError(f"{err}; nothing was fetched") from None
        except OSError as err:
            raise PackageError(f"{chosen or Path(root) / CACHE_DIR}: cannot use it as the media cache "
                               f"({err.strerror or err}); nothing was fetched") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def _name(self, name: str) -> str:
        return name if self.fd is not None else str(self.folder / name)

    def _open(self, name: str, flags: int, mode: int = 0o666) -> int:
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        return os.open(self._name(name), flags, mode, dir_fd=self.fd)

    def _regular_size(self, name: str) -> int | None:
        try:
            st = os.stat(self._name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def cached(self, name: str, url: str) -> bool:
        """True when `name` holds the complete file of `url`, as its note says (same URL, same size)."""
        size = self._regular_size(name)
        if size is None or self._regular_size(name + NOTE_SUFFIX) is None:
            return False
        try:
            with os.fdopen(self._open(name + NOTE_SUFFIX, os.O_RDONLY), "rb") as fh:
                note = json.loads(fh.read(1 << 16))
        except (OSError, ValueError):
            return False
        if not (isinstance(note, dict) and note.get("url") == url and note.get("bytes") == size):
            return False
        try:  # a file cached before answers were checked is kept only if it is a media file
            with os.fdopen(self._open(name, os.O_RDONLY), "rb") as fh:
                return api.media_format(fh.read(HEAD_BYTES)) is not None
        except OSError:
            return False

    def new_part(self, name: str) -> tuple[str, Any]:
        """A new temporary file for `name` in the cache: created, never followed, never an existing one."""
        for _ in range(100):
            part = f".{name}.{os.urandom(4).hex()}.part"
            try:
                return part, os.fdopen(self._open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb")
            except FileExistsError:
                continue
        raise FetchFailed(f"cannot create a temporary file for {name} in {self.folder}")

    def publish(self, part: str, name: str) -> None:
        os.replace(self._name(part), self._name(name), src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def discard(self, part: str) -> None:
        try:
            os.unlink(self._name(part), dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def path(self, name: str) -> Path:
        return self.folder / name


def _download(url: str, out, limits: FetchLimits, opener: Opener) -> tuple[int, str]:
    """Copy `url` into `out` within the limits: (bytes, sha256), or FetchFailed saying why."""
    start = time.monotonic()
    digest = hashlib.sha256()
    try:
        response = opener(url, limits.read_timeout_s)
    except AddressRefused as err:
        raise Refused(err.host, str(err)) from None
    except urllib.error.HTTPError as err:
        raise FetchFailed(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        reason = getattr(err, "reason", err)
        kind = Unreachable if _unreachable(err) else FetchFailed
        raise kind(str(reason) or type(reason).__name__) from None
    with response:
        headers = getattr(response, "headers", None)
        wrong_type = not_media(headers.get("Content-Type")) if headers else None
        if wrong_type:
            raise FetchFailed(wrong_type)
        length = headers.get("Content-Length") if headers else None
        try:
            expected = int(length) if length is not None else None
        except ValueError:
            expected = None
        if expected is not None and expected > limits.max_bytes:
            raise FetchFailed(f"{expected / 1e6:.1f} MB announced, over the {limits.max_bytes / 1e6:g} MB limit "
                              "(--fetch-max-mb)")
        got, head = 0, b""
        read = getattr(response, "read1", response.read)  # what has come, never a wait for a full buffer
        try:
            while chunk := read(CHUNK):
                if len(head) < HEAD_BYTES:  # a media file's first bytes: checked before the rest is read
                    head += chunk[:HEAD_BYTES - len(head)]
                    if len(head) == HEAD_BYTES:
                        _check_head(head)
                got += len(chunk)
                if got > limits.max_bytes:
                    raise FetchFailed(f"more than the {limits.max_bytes / 1e6:g} MB limit (--fetch-max-mb); "
                                      "stopped")
                if time.monotonic() - start > limits.deadline_s:
                    raise FetchFailed(f"not complete after the {limits.deadline_s:g} s deadline "
                                      f"(--fetch-timeout; {got} bytes received)")
                out.write(chunk)
                digest.update(chunk)
        except FetchFailed:
            raise
        except (OSError, http.client.HTTPException) as err:  # a read timed out, the connection dropped
            raise FetchFailed(f"transfer broken after {got} bytes ({err or type(err).__name__})") from None
    if expected is not None and got != expected:
        raise FetchFailed(f"truncated: {got} of the {expected} bytes announced")
    if got == 0:
        raise FetchFailed("empty download")
    if len(head) < HEAD_BYTES:
        _check_head(head)
    return got, digest.hexdigest()


def fetch(row: MediaRow, cache: MediaCache, limits: FetchLimits = FetchLimits(),
          opener: Opener | None = None) -> Path:
    """The cached file of a remote media, downloaded unless its complete file for this URL is there."""
    opener = opener or opener_for(limits)
    name = cache_name(row)
    if cache.cached(name, row.file_path):
        return cache.path(name)
    part, out = cache.new_part(name)
    try:
        with out:
            size, sha256 = _download(row.file_path, out, limits, opener)
            out.flush()
            os.fsync(out.fileno())
        wanted = expected_sha256(row.file_path)
        if wanted is not None and sha256 != wanted:
            raise FetchFailed(f"sha256 {sha256} is not the {wanted} its URL gives")
        note_part, note = cache.new_part(name + NOTE_SUFFIX)
        try:
            with note:
                note.write(json.dumps({"url": row.file_path, "bytes": size, "sha256": sha256}).encode())
            cache.publish(part, name)  # the file first: a note never vouches for a file not yet there
            cache.publish(note_part, name + NOTE_SUFFIX)
        except BaseException:
            cache.discard(note_part)
            raise
    except BaseException:
        cache.discard(part)
        raise
    return cache.path(name)


@dataclass
class Fetched:
    """What fetch_all did: the files, in the rows' order, and what was skipped (one reason per media)."""

    files: list[tuple[MediaRow, Path]] = field(default_factory=list)
    failed: list[tuple[MediaRow, str]] = field(default_factory=list)
    unreachable: dict[str, tuple[str, list[MediaRow]]] = field(default_factory=dict)  # host -> (reason, rows)
    refused: dict[str, tuple[str, list[MediaRow]]] = field(default_factory=dict)  # host -> (reason, rows)
    reused: int = 0


def fetch_all(rows: list[MediaRow], cache: MediaCache, limits: FetchLimits, opener: Opener | None = None) -> Fetched:
    """Fetch `rows` a few at a time; a host found unreachable, or at an address refused, is not tried again for
    the others."""
    opener = opener or opener_for(limits)
    done = Fetched()
    dead: dict[str, tuple[dict, str]] = {}  # host -> (where its media are said: done.unreachable or done.refused, why)
    lock = threading.Lock()
    outcome: dict[int, tuple[str, Any]] = {}

    def one(index: int, row: MediaRow) -> None:
        host = urllib.parse.urlparse(row.file_path).netloc.lower()
        with lock:
            if host in dead:
                outcome[index] = ("dead", host)
                return
        was_cached = cache.cached(cache_name(row), row.file_path)
        try:
            path = fetch(row, cache, limits, opener)
        except Unreachable as err:
            with lock:
                dead.setdefault(host, (done.unreachable, str(err)))
            outcome[index] = ("dead", host)
            return
        except Refused as err:
            if err.host != urllib.parse.urlparse(row.file_path).hostname:  # a redirect's target: this media only
                outcome[index] = ("failed", str(err))
                return
            with lock:
                dead.setdefault(host, (done.refused, str(err)))
            outcome[index] = ("dead", host)
            return
        except (OSError, ValueError) as err:
            outcome[index] = ("failed", str(err))
            return
        outcome[index] = ("ok", (path, was_cached))

    with ThreadPoolExecutor(max_workers=max(1, limits.workers), thread_name_prefix="fetch") as pool:
        for future in [pool.submit(one, i, row) for i, row in enumerate(rows)]:
            future.result()
    for index, row in enumerate(rows):
        kind, value = outcome[index]
        if kind == "ok":
            done.files.append((row, value[0]))
            done.reused += value[1]
        elif kind == "failed":
            done.failed.append((row, value))
        else:
            where, why = dead[value]
            where.setdefault(value, (why, []))[1].append(row)
    return done
