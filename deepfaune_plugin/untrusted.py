"""JSON, YAML and CSV text from users' files, read within limits: a size, a nesting depth and a count of values.

Why: a 1 KB YAML file with nine nested aliases expands to billions of values once anything walks it (it took
22 GB and was killed), and a 100,000-deep JSON array ends in RecursionError. PyYAML builds aliases as shared
references, so reading is cheap; the walk below counts every value as the expanded document would hold it and
stops at the limit, so a bomb is refused in milliseconds. Every refusal names the file and the limit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import DeepfauneError

MAX_BYTES = 16 * 1024 * 1024  # a datapackage.json, a models manifest, metadata: kilobytes in practice
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
MAX_CSV_BYTES = 1024 * 1024 * 1024  # a record or observations table of a large survey: tens of MB


class UntrustedInputError(DeepfauneError, ValueError):
    """A user's JSON/YAML file refused: unreadable, malformed, or over a limit; the message names the file."""


def _read(path: Path, max_bytes: int) -> bytes:
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise UntrustedInputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if size > max_bytes:
        raise UntrustedInputError(f"{path}: {size:,} bytes, over the {max_bytes:,}-byte limit for this file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise UntrustedInputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) > max_bytes:  # grew while we looked
        raise UntrustedInputError(f"{path}: over the {max_bytes:,}-byte limit for this file")
    return data


def _text(data: bytes, path: Path) -> str:
    return decode_user_text(data, str(path))


def decode_user_text(data: bytes, where: str, encodings: tuple[str, ...] = ("utf-8-sig",)) -> str:
    """A user's text file (JSON, YAML, every CSV a host reads): UTF-16/32 refused with what to do (decoded as
    UTF-8 or a code page it would come out as a garbled column list), else the first of `encodings` that
    decodes it; "utf-8-sig" accepts the byte-order mark some Windows editors write, "utf-8" keeps it."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and b"\x00" in data[:4]):
        raise UntrustedInputError(f"{where}: UTF-16 text; save it as UTF-8")
    first: UnicodeDecodeError | None = None
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as err:
            first = first or err
    raise UntrustedInputError(f"{where}: not UTF-8 text (byte {first.start if first else 0})")


def read_user_text(path: str | os.PathLike, max_bytes: int = MAX_CSV_BYTES, encodings: tuple[str, ...] = ("utf-8-sig",)
              ) -> str:
    """A user's text file (a CSV...) within a size limit, decoded as `decode_user_text` says; refusals name the file."""
    path = Path(path)
    return decode_user_text(_read(path, max_bytes), str(path), encodings)


def check_shape(value: Any, where: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """`value` unchanged, or UntrustedInputError when it nests deeper than `max_depth` or holds (expanded)
    more than `max_values` values. Iterative: no recursion limit to hit."""
    stack = [(value, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise UntrustedInputError(f"{where}: more than {max_values:,} values (an alias bomb?); refused")
        if isinstance(node, dict):
            children: list[Any] | tuple[Any, ...] = list(node.keys()) + list(node.values())
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if children and depth >= max_depth:
            raise UntrustedInputError(f"{where}: nested deeper than {max_depth} levels; refused")
        stack.extend((child, depth + 1) for child in children)
    return value


def parse_json(text: str | bytes, where: str, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """JSON text from a user's file, refused (UntrustedInputError, naming `where`) when empty, malformed, nested
    deeper than `max_depth` or holding more than `max_values` values."""
    if isinstance(text, bytes):
        text = _text(text, Path(where))
    if not text.strip():
        raise UntrustedInputError(f"{where}: empty (a JSON document was expected)")
    # json recurses per nesting level: refuse what is deeper than the limit before it does
    depth = level = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
            if depth > max_depth:
                raise UntrustedInputError(f"{where}: nested deeper than {max_depth} levels; refused")
        elif ch in "]}":
            level -= 1
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UntrustedInputError(f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") \
            from None
    return check_shape(value, where, max_depth, max_values)


def load_json(path: str | os.PathLike, max_bytes: int = MAX_BYTES, **limits: int) -> Any:
    """A user's JSON file (at most `max_bytes`), by `parse_json`'s rules; UntrustedInputError names the file."""
    path = Path(path)
    return parse_json(_text(_read(path, max_bytes), path), str(path), **limits)


def load_yaml(path: str | os.PathLike, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_values: int = MAX_VALUES) -> Any:
    """YAML (or JSON, a subset of it) with PyYAML's safe loader, within the same limits."""
    path = Path(path)
    text = _text(_read(path, max_bytes), path)
    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise UntrustedInputError(f"{path}: nested too deeply; refused") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise UntrustedInputError(f"{path}: not valid YAML/JSON{at}: {getattr(err, 'problem', None) or err}") \
            from None
    return check_shape(value, str(path), max_depth, max_values)
