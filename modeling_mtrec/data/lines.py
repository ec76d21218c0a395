"""The lines of a text data file, read one way by every line-based reader (MIND's TSV files, JSON Lines).

The file is read as bytes and split on ``\\n`` only, then each line is decoded on its own, so invalid UTF-8 is
reported at its own line (and skipped and counted under ``lenient``) instead of failing a whole buffer; a stray
``\\r`` inside a field stays part of it (text mode would split there). What a line-by-line reader cannot fix is
refused for the whole file, lenient or not: a compressed file (named ``news.tsv`` but gzip inside) has no rows to
skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from .stats import BadRows

__all__ = ["compression", "cr_only_hint", "iter_lines", "json_objects"]

# (leading bytes, format, how to decompress): the formats data files are shipped or stored in.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"PK\x03\x04", "zip", "unzip"),
    (b"BZh", "bzip2", "bunzip2"),  # followed by a block-size digit and the block magic 1AY&SY, checked below
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)


def compression(path: str) -> tuple[str, str] | None:
    """``(format, decompressing command)`` when `path` starts with a compressed format's signature, else None."""
    with open(path, "rb") as f:
        head = f.read(10)
    for signature, name, command in _SIGNATURES:
        if head.startswith(signature) and (name != "bzip2" or head[3:4].isdigit() and head[4:10] == b"1AY&SY"):
            return name, command
    return None


def iter_lines(path: str, bad_row: BadRows) -> Iterator[tuple[int, str]]:
    """``(lineno, line)`` (1-based) for every line of `path` that carries data.

    Only the line ending (``\\n`` or ``\\r\\n``) and a byte-order mark starting the line are removed (on any line:
    files concatenated with ``cat`` carry one per file); empty lines carry no data and are skipped. A line that is
    not UTF-8 goes to `bad_row` (an error naming the line, or a counted skip). A compressed file raises
    ``bad_row.error`` naming it and the command that decompresses it.
    """
    compressed = compression(path)
    if compressed is not None:
        name, command = compressed
        raise bad_row.error(
            f"{path}: the file is {name}-compressed, not text: decompress it first (e.g. `{command}`) and read the "
            "file it holds"
        )
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad_row(lineno, f"not valid UTF-8 ({err.reason} at byte {err.start})")
                continue
            line = line.removeprefix("\ufeff")
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            if line:
                yield lineno, line


def json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(lineno, object)`` for every line of a JSON Lines file that carries data, or ``(lineno, problem)`` for a line
    that is not UTF-8 or not a JSON object; a byte-order mark and blank lines carry no data. The caller decides what
    a problem is (an error naming the line, or a counted skip)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff").strip()
            except UnicodeDecodeError as err:
                yield lineno, f"not valid UTF-8 ({err.reason} at byte {err.start})"
                continue
            if not line:
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as error:
                yield lineno, f"not a JSON object ({error})"
                continue
            if not isinstance(value, dict):
                yield lineno, f"not a JSON object: {line[:80]!r}"
                continue
            yield lineno, value


def cr_only_hint(line: str, is_record: Callable[[str], bool]) -> str:
    """The explanation to add to the problem of a bad line that is several records joined by carriage returns: a
    file with CR-only line endings (classic Mac OS, some spreadsheet exports) is one line to a reader that splits on
    ``\\n``. `is_record` tells whether a piece of the line split at ``\\r`` is a record of the file's format; with
    fewer than two such pieces (e.g. a stray ``\\r`` inside a field) the hint is ``""``."""
    if "\r" not in line:
        return ""
    records = sum(is_record(piece) for piece in line.split("\r") if piece)
    if records < 2:
        return ""
    return (
        f": the line holds {records} records separated by carriage returns (CR-only line endings), which join them "
        "into one line; convert the line endings to \\n (e.g. `tr '\\r' '\\n' < old > new`)"
    )
