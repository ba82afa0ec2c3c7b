"""Reading a Camtrap DP package: descriptor, tables, media files (remote ones: camtrapdp_fetch).

CSV tables are read so that every record keeps its exact original text: rows this plugin does
not own are written back byte for byte (a human classification is never re-serialised).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from deepfaune_plugin.api import (HostError, UnsafePathError, UntrustedInputError, decode_user_text, not_regular,
                                  parse_json, safe_relative)

from deepfaune_plugin.hooks.camtrapdp.schema import FILE_PATH_PATTERN, MISSING, TABLES, parse_datetime

DESCRIPTOR = "datapackage.json"
SUPPORTED_VERSIONS = ("1.0", "1.0.1", "1.0.2")
_VERSION_IN_URL = re.compile(r"camtrap-dp[/-](\d+(?:\.\d+)*)(?:/|$)")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_NEWLINE = re.compile(r"\r\n|\n|\r")
MEDIATYPE_SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "image/bmp": ".bmp",
                    "image/gif": ".gif", "image/webp": ".webp", "video/mp4": ".mp4", "video/x-msvideo": ".avi",
                    "video/avi": ".avi", "video/quicktime": ".mov", "video/x-ms-asf": ".asf", "video/mpeg": ".mpg",
                    "video/x-matroska": ".mkv"}


class PackageError(HostError):
    """A package that cannot be used as it is; the message names the file and the problem."""


# ---------------------------------------------------------------- CSV that keeps its bytes

@dataclass
class RawTable:
    """A CSV table as records that remember their exact text (line terminators included)."""

    header: list[str]
    header_text: str
    rows: list[dict[str, str]]  # one per data record, keyed by header
    texts: list[str]  # the original text of each data record
    newline: str = "\n"
    bom: str = ""

    def serialise(self, row: dict[str, str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator=self.newline).writerow([row.get(name, "") for name in self.header])
        return buf.getvalue()


def _records(text: str) -> Iterator[tuple[list[str], str]]:
    """(fields, exact text) per CSV record; a quoted field may span lines."""
    pieces = iter(re.findall(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$", text))
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        for piece in pieces:
            consumed.append(piece)
            yield piece

    for fields in csv.reader(feed(), strict=True):
        record = "".join(consumed)
        consumed.clear()
        yield fields, record


def parse_table(text: str, where: str, default_header: list[str] | None = None) -> RawTable:
    bom = ""
    if text.startswith("\ufeff"):
        bom, text = "\ufeff", text[1:]
    found = _NEWLINE.search(text)
    newline = found.group(0) if found else "\n"
    try:
        records = list(_records(text))
    except csv.Error as err:
        raise PackageError(f"{where}: not a readable CSV file ({err})") from err
    if not records:
        if default_header is None:
            raise PackageError(f"{where}: empty file (no header row)")
        buf = io.StringIO()
        csv.writer(buf, lineterminator=newline).writerow(default_header)
        return RawTable(list(default_header), buf.getvalue(), [], [], newline, bom)
    (header, header_text), body = records[0], records[1:]
    rows, texts = [], []
    for n, (fields, record) in enumerate(body, start=2):
        if not fields:  # a blank line: kept as it is, never a row
            if texts:
                texts[-1] += record
            else:
                header_text += record
            continue
        if len(fields) != len(header):
            raise PackageError(f"{where} line {n}: {len(fields)} values for {len(header)} columns")
        rows.append(dict(zip(header, fields)))
        texts.append(record)
    return RawTable(header, header_text, rows, texts, newline, bom)


def read_table(path: Path, where: str, default_header: list[str] | None = None) -> RawTable:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if default_header is not None:
            return parse_table("", where, default_header)
        raise PackageError(f"{where}: file not found ({path})") from None
    try:
        text = decode_user_text(data, where, ("utf-8",))  # a BOM is kept: the table is written back byte for byte
    except UntrustedInputError as err:
        raise PackageError(str(err)) from None
    return parse_table(text, where, default_header)


def join_table(table: RawTable, texts: list[str]) -> str:
    """The file text of `table`'s header followed by `texts` (each ends with a line terminator)."""
    out = [table.bom, table.header_text]
    if not table.header_text.endswith(("\n", "\r")):
        out.append(table.newline)
    for text in texts:
        out.append(text if text.endswith(("\n", "\r")) else text + table.newline)
    return "".join(out)


# ---------------------------------------------------------------- the package

@dataclass
class Package:
    root: Path
    descriptor_bytes: bytes
    descriptor: dict[str, Any]
    version: str
    paths: dict[str, Path]  # deployments/media/observations -> local file

    @property
    def descriptor_path(self) -> Path:
        return self.root / DESCRIPTOR


def is_package(source: Path) -> bool:
    """A datapackage.json (given, or in the folder) makes a source Camtrap DP unless it is a well-formed
    Frictionless package of another kind: a broken one is refused with its reason by `load_package`, never
    taken silently for a plain folder."""
    source = Path(source)
    path = source if source.is_file() else source / DESCRIPTOR
    if not path.is_file() or path.name.lower() != DESCRIPTOR:
        return False
    try:
        descriptor = parse_json(path.read_bytes(), str(path))
    except (OSError, UntrustedInputError):
        return True  # broken: load_package says why
    if not isinstance(descriptor, dict):
        return True
    resources = descriptor.get("resources")
    names = {r.get("name") for r in resources if isinstance(r, dict)} if isinstance(resources, list) else set()
    # only a well-formed Frictionless package of another kind is left to other hosts
    return "camtrap-dp" in str(descriptor.get("profile", "")) or {"deployments", "media", "observations"} <= names \
        or not isinstance(resources, list)


def package_root(source: Path) -> Path:
    source = Path(source)
    return source.parent if source.is_file() else source


def profile_version(profile: str) -> str | None:
    found = _VERSION_IN_URL.search(profile or "")
    return found.group(1) if found else None


def check_relative(path_text: str, where: str) -> None:
    """A path inside the package: relative, no '..', not starting with '.', '/' or '~'."""
    if not re.match(FILE_PATH_PATTERN, path_text) or "\\" in path_text or re.match(r"^[A-Za-z]:", path_text):
        raise PackageError(f"{where}: {path_text!r} is not a path inside the package "
                           "(it must be relative, use '/', and not start with '.', '/' or '~' nor contain '..')")


def load_package(source: Path) -> Package:
    root = package_root(source)
    path = root / DESCRIPTOR
    if not path.is_file():
        raise PackageError(f"{path}: not found; is {root} a Camtrap DP package?")
    plain = f" (to classify {root} as a plain folder instead: --host folder)"
    try:
        raw = path.read_bytes()
        descriptor = parse_json(raw, str(path))
    except OSError as err:
        raise PackageError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UntrustedInputError as err:
        raise PackageError(f"{err}{plain}") from None
    if not isinstance(descriptor, dict):
        raise PackageError(f"{path}: the descriptor must be a JSON object, not {type(descriptor).__name__}{plain}")
    version = profile_version(str(descriptor.get("profile", "")))
    if version is None:
        raise PackageError(f"{path}: 'profile' is not a Camtrap DP profile URL ({descriptor.get('profile')!r})"
                           f"{plain}")
    if version not in SUPPORTED_VERSIONS:
        raise PackageError(f"{path}: Camtrap DP {version} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})")
    paths: dict[str, Path] = {}
    for resource in descriptor.get("resources", []):
        if not isinstance(resource, dict) or resource.get("name") not in TABLES:
            continue
        name = resource["name"]
        where = f"{path}: resource {name!r}"
        target = resource.get("path")
        if isinstance(target, list):
            if len(target) != 1:
                raise PackageError(f"{where}: tables split over several files are not supported")
            target = target[0]
        if not isinstance(target, str):
            raise PackageError(f"{where}: needs a 'path' (inline 'data' is not supported)")
        if _URL.match(target):
            raise PackageError(f"{where}: a table at a URL ({target}) cannot be updated; download the package first")
        check_relative(target, where)
        encoding = str(resource.get("encoding", "utf-8")).lower().replace("_", "-")
        if encoding not in ("utf-8", "utf8", "utf-8-sig"):
            raise PackageError(f"{where}: encoding {encoding!r} is not supported (UTF-8 only)")
        paths[name] = root / target
    for name in TABLES:
        if name not in paths:
            raise PackageError(f"{path}: no {name!r} resource")
    for name in ("deployments", "media"):
        if not paths[name].is_file():
            raise PackageError(f"{path}: the {name} table {paths[name].relative_to(root)} is missing")
    return Package(root=root, descriptor_bytes=raw, descriptor=descriptor, version=version, paths=paths)


# ---------------------------------------------------------------- media

@dataclass(frozen=True)
class MediaRow:
    media_id: str
    deployment_id: str
    timestamp: str  # exactly as in media.csv
    file_path: str
    file_name: str
    mediatype: str

    @property
    def is_remote(self) -> bool:
        return bool(_URL.match(self.file_path))


@dataclass
class MediaListing:
    local: list[tuple[MediaRow, Path]] = field(default_factory=list)
    remote: list[MediaRow] = field(default_factory=list)
    missing: list[MediaRow] = field(default_factory=list)
    unsupported: list[tuple[MediaRow, str]] = field(default_factory=list)


def media_rows(table: RawTable, where: str) -> list[MediaRow]:
    for name in ("mediaID", "deploymentID", "timestamp", "filePath"):
        if name not in table.header:
            raise PackageError(f"{where}: no {name!r} column")
    out = []
    for n, row in enumerate(table.rows, start=1):
        media_id, file_path = row["mediaID"], row["filePath"]
        if media_id in MISSING or file_path in MISSING:
            raise PackageError(f"{where} row {n}: mediaID and filePath are required")
        try:
            parse_datetime(row["timestamp"])
        except ValueError:
            raise PackageError(f"{where} row {n} (mediaID {media_id}): timestamp {row['timestamp']!r} is not "
                               "YYYY-MM-DDThh:mm:ss with a UTC offset") from None
        out.append(MediaRow(media_id, row["deploymentID"], row["timestamp"], file_path,
                            row.get("fileName", ""), row.get("fileMediatype", "")))
    return out


def list_media(root: Path, rows: list[MediaRow], where: str) -> MediaListing:
    """Sort media into local (existing), remote, missing and unsupported; bad paths are fatal."""
    listing = MediaListing()
    bad = []
    for row in rows:
        if row.mediatype.startswith("audio/"):
            listing.unsupported.append((row, f"{row.mediatype} is not an image or a video"))
            continue
        if row.is_remote:
            scheme = row.file_path.split(":", 1)[0].lower()
            if scheme in ("http", "https"):
                listing.remote.append(row)
            else:
                listing.unsupported.append((row, f"{scheme}:// URLs are not supported (http and https are)"))
            continue
        try:
            check_relative(row.file_path, f"{where} (mediaID {row.media_id})")
        except PackageError as err:
            bad.append(str(err))
            continue
        try:
            path = safe_relative(root, row.file_path, manifest=where)
        except UnsafePathError as err:
            bad.append(f"{where} (mediaID {row.media_id}): filePath {row.file_path!r} {err.reason}")
            continue
        why = not_regular(path)  # only regular files are media: a FIFO would hang the run
        if why is None:
            listing.local.append((row, path))
        elif why == "no such file":
            listing.missing.append(row)
        else:
            listing.unsupported.append((row, why))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise PackageError("; ".join(bad[:5]) + more)
    return listing
