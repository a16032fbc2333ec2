"""Reading documents from files: directories, .txt, .md, .jsonl and .csv.

Readers yield :class:`Document` objects and, for every record they cannot use, a
:class:`Problem` naming the file, the line and the reason; one bad record never stops
the rest of a file, and one bad file never stops the rest of a run.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchkit.document import Document, MetadataValue, Problem

__all__ = ["FieldMap", "SourceOptions", "read_sources", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl", ".csv")
_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_BINARY_PROBE_BYTES = 8192


@dataclass(frozen=True)
class FieldMap:
    """Which record fields hold the id, title and text; every other field is metadata.

    Each role takes the first field present from its candidates, so BEIR files
    (``_id``, ``title``, ``text``) and most other JSONL/CSV layouts need no flags.
    """

    id: Sequence[str] = ("id", "_id", "doc_id", "docid")
    title: Sequence[str] = ("title", "name")
    text: Sequence[str] = ("text", "body", "content", "contents")

    @classmethod
    def of(cls, id: str | None = None, title: str | None = None, text: str | None = None) -> FieldMap:
        """A map where any field named explicitly replaces the defaults for its role."""
        defaults = cls()
        return cls(
            id=(id,) if id else defaults.id,
            title=(title,) if title else defaults.title,
            text=(text,) if text else defaults.text,
        )


@dataclass(frozen=True)
class SourceOptions:
    """How to find and read input files."""

    include: Sequence[str] = tuple(f"*{suffix}" for suffix in SUPPORTED_SUFFIXES)
    exclude: Sequence[str] = (".*",)
    fields: FieldMap = FieldMap()
    max_file_bytes: int = 64 * 1024 * 1024


def read_sources(paths: Iterable[str | Path], options: SourceOptions = SourceOptions()) -> Iterator[Document | Problem]:
    """Documents from files and directories (recursive), with problems for what is unusable."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path, options):
                yield from _read_file(file, options)
        elif path.exists():
            yield from _read_file(path, options)
        else:
            yield Problem(str(path), "no such file or directory")


def _walk(root: Path, options: SourceOptions) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _matches(d, options.exclude))
        for name in sorted(files):
            if _matches(name, options.include) and not _matches(name, options.exclude):
                yield Path(folder) / name


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """Case-insensitive, so ``*.md`` also finds ``README.MD`` on every platform."""
    return any(fnmatch.fnmatch(name.lower(), pattern.lower()) for pattern in patterns)


def _read_file(path: Path, options: SourceOptions) -> Iterator[Document | Problem]:
    suffix = path.suffix.lower()
    where = path.as_posix()
    if suffix not in SUPPORTED_SUFFIXES:
        yield Problem(where, f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
        return
    try:
        size = path.stat().st_size
        if size > options.max_file_bytes:
            yield Problem(where, f"file is {size:,} bytes, over the limit of {options.max_file_bytes:,}")
            return
        data = path.read_bytes()
    except OSError as exc:
        yield Problem(where, f"cannot read file: {exc.strerror or exc}")
        return
    if b"\x00" in data[:_BINARY_PROBE_BYTES]:
        yield Problem(where, "binary file (contains NUL bytes), not text")
        return
    if suffix == ".jsonl":
        yield from _read_jsonl(where, data, options.fields)
        return
    text = _decode(where, data)
    if isinstance(text, Problem):
        yield text
    elif suffix == ".csv":
        yield from _read_csv(where, text, options.fields)
    else:
        yield _text_document(where, text, suffix)


def _decode(where: str, data: bytes, line: int | None = None) -> str | Problem:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The utf-8-sig codec reports positions after a leading BOM it has stripped.
        bad = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        if line is None:
            line = data.count(b"\n", 0, bad) + 1
        return Problem(where, f"not valid UTF-8 (byte 0x{data[bad]:02x})", line)


def _text_document(where: str, text: str, suffix: str) -> Document:
    return Document(
        id=where,
        text=text,
        title=_markdown_title(text) if suffix != ".txt" else "",
        metadata={"format": suffix.lstrip(".")},
        origin=where,
    )


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:50]:
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip()
    return ""


def _read_jsonl(where: str, data: bytes, fields: FieldMap) -> Iterator[Document | Problem]:
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        line = _decode(where, raw_line, number)
        if isinstance(line, Problem):
            yield line
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Problem(where, f"malformed JSON ({exc.msg} at column {exc.colno})", number)
            continue
        if not isinstance(record, dict):
            yield Problem(where, f"expected a JSON object, got {type(record).__name__}", number)
            continue
        yield _record_document(where, number, record, fields)


def _read_csv(where: str, text: str, fields: FieldMap) -> Iterator[Document | Problem]:
    csv.field_size_limit(max(len(text), 131072))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            yield Problem(where, "empty CSV file (no header row)")
            return
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield Problem(where, f"row has {len(row)} fields, the header has {len(header)}", number)
                continue
            yield _record_document(where, number, dict(zip(header, row)), fields)
    except csv.Error as exc:
        yield Problem(where, f"unreadable CSV ({exc}); the rest of the file was skipped", reader.line_num)


def _pick(record: Mapping[str, Any], candidates: Sequence[str]) -> tuple[str | None, Any]:
    for name in candidates:
        if name in record:
            return name, record[name]
    return None, None


def _record_document(where: str, line: int, record: dict[str, Any], fields: FieldMap) -> Document | Problem:
    text_field, text = _pick(record, fields.text)
    if text_field is None:
        return Problem(where, f"no text field (looked for {', '.join(fields.text)}; record has {', '.join(record) or 'no fields'})", line)
    if not isinstance(text, str):
        return Problem(where, f"field {text_field!r} holds {type(text).__name__} data, not text", line)
    id_field, doc_id = _pick(record, fields.id)
    title_field, title = _pick(record, fields.title)
    used = {text_field, id_field, title_field}
    metadata: dict[str, MetadataValue] = {}
    nested = record.get("metadata") if "metadata" not in used else None
    if isinstance(nested, dict):
        used.add("metadata")
        metadata.update({k: _metadata_value(v) for k, v in nested.items()})
    metadata.update({k: _metadata_value(v) for k, v in record.items() if k not in used})
    return Document(
        id=str(doc_id) if doc_id not in (None, "") else f"{where}:{line}",
        text=text,
        title=str(title) if title is not None else "",
        metadata=metadata,
        origin=f"{where}:{line}",
    )


def _metadata_value(value: Any) -> MetadataValue:
    """Scalars are kept as they are; lists and objects are kept as their JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False)

