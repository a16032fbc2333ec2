"""Reading documents from files: directories, .txt, .md, .jsonl and .csv.

Readers yield :class:`Document` objects and, for every record they cannot use, a
:class:`Problem` naming the file, the line and the reason; one bad record never stops
the rest of a file, and one bad file never stops the rest of a run.

JSONL and CSV files are streamed record by record, so a file of any size is read in
the memory of one record; only .txt/.md files, which are one document each, are read
whole. Every file is named by its :func:`source_key`, the same however its path was
spelled, so document ids, origins and problems stay stable from one ingest to the next.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from searchkit.document import Document, MetadataValue, Problem
from searchkit.errors import ConfigError

__all__ = ["CSV_TYPES", "FieldMap", "SourceOptions", "Sources", "read_sources", "source_key", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl", ".csv")
CSV_TYPES = ("int", "float", "bool", "date", "str")
_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_BINARY_PROBE_BYTES = 8192
_COUNT_BLOCK_BYTES = 1 << 20


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
    """How to find and read input files.

    ``max_file_bytes`` guards only .txt/.md files, which are read whole as one document;
    JSONL and CSV files are streamed and have no size limit. ``csv_types`` forces a
    CSV column's type (column name -> one of :data:`CSV_TYPES`) where the guess from its
    values is not wanted. ``id_root`` is the folder file ids are relative to (default:
    the working directory when reading starts); see :func:`source_key`.
    """

    include: Sequence[str] = tuple(f"*{suffix}" for suffix in SUPPORTED_SUFFIXES)
    exclude: Sequence[str] = (".*",)
    fields: FieldMap = FieldMap()
    max_file_bytes: int = 64 * 1024 * 1024
    csv_types: Mapping[str, str] = field(default_factory=dict)
    id_root: Path | None = None

    def __post_init__(self) -> None:
        unknown = {column: kind for column, kind in self.csv_types.items() if kind not in CSV_TYPES}
        if unknown:
            named = ", ".join(f"{column}={kind!r}" for column, kind in unknown.items())
            raise ConfigError(f"unknown CSV column type ({named}); valid types: {', '.join(CSV_TYPES)}")


def source_key(path: str | Path, id_root: Path | None = None) -> str:
    """The stable name of a file or folder: relative to ``id_root`` if inside it, else absolute.

    The path is made absolute and its symlinks resolved first, so ``docs/a.md``,
    ``./docs/a.md`` and ``/abs/docs/a.md`` all give ``docs/a.md`` when run from
    ``/abs``. ``id_root`` defaults to the working directory; ``id_root`` itself is
    ``"."``. Keys use ``/`` on every platform, so a folder's key followed by ``/`` is a
    prefix of the keys of everything under it (for ``"."``: every key not starting with
    ``/``).
    """
    resolved = Path(os.path.realpath(path))
    root = Path(os.path.realpath(id_root if id_root is not None else os.getcwd()))
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    return resolved.as_posix()


class Sources:
    """The documents and problems of some files and folders (read recursively).

    Iterating reads the files afresh each time. An ingest that mirrors a folder needs
    more than the documents, so each pass also records ``skipped_files`` (walked files
    not matching ``include``, by suffix: a folder of PDFs should not look empty without
    a word) and ``problem_sources`` (keys of files with at least one problem, whose
    stored documents must not be pruned just because a bad line hid them). Hidden
    files are left out of both: the ``.*`` exclude pattern skips them on purpose.
    """

    def __init__(self, paths: Iterable[str | Path], options: SourceOptions = SourceOptions()) -> None:
        # One path alone is taken as one path, not as the characters of its name.
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(path) for path in paths]
        self.options = options
        # Fixed now, so a later chdir cannot give one file two ids within a run.
        self.id_root = Path(os.path.realpath(options.id_root if options.id_root is not None else os.getcwd()))
        self.skipped_files: Counter[str] = Counter()
        self.problem_sources: set[str] = set()

    def __iter__(self) -> Iterator[Document | Problem]:
        self.skipped_files = Counter()
        self.problem_sources = set()
        for item in self._read_all():
            if isinstance(item, Problem):
                self.problem_sources.add(item.where)
            yield item

    def estimate(self) -> int:
        """About how many documents the paths hold, for a progress bar's total.

        A text file counts one, a JSONL or CSV file its newlines (less a CSV header);
        counting newlines in binary blocks takes a fraction of a second per 100 MB.
        Unreadable files count nothing: reading them reports why.
        """
        total = 0
        for path in self._files():
            suffix = path.suffix.lower()
            if suffix in _TEXT_SUFFIXES:
                total += 1
            elif suffix in (".jsonl", ".csv"):
                try:
                    lines = _count_lines(path)
                except OSError:
                    continue
                total += max(lines - 1, 0) if suffix == ".csv" else lines
        return total

    def _key(self, path: Path) -> str:
        return source_key(path, self.id_root)

    def _read_all(self) -> Iterator[Document | Problem]:
        for path in self.paths:
            if path.is_dir():
                yield from self._read_folder(path)
            elif path.exists():
                yield from self._read_file(path)
            else:
                yield self._missing(path)

    def _read_folder(self, root: Path) -> Iterator[Document | Problem]:
        unlisted: list[OSError] = []
        for file in _walk(root, self.options, self.skipped_files, unlisted.append):
            yield from self._unlisted_problems(unlisted)
            yield from self._read_file(file)
        yield from self._unlisted_problems(unlisted)

    def _unlisted_problems(self, unlisted: list[OSError]) -> Iterator[Problem]:
        """A folder that cannot be listed is reported, never passed over as if it were empty."""
        while unlisted:
            error = unlisted.pop(0)
            yield Problem(self._key(Path(error.filename)), f"cannot read folder: {error.strerror or error}")

    def _files(self) -> Iterator[Path]:
        for path in self.paths:
            if path.is_dir():
                yield from _walk(path, self.options, Counter(), lambda error: None)
            elif path.exists():
                yield path

    def _missing(self, path: Path) -> Problem:
        if path.is_symlink():
            # Named by the link itself: its resolved target is a path the user never gave.
            folder = self._key(path.parent)
            where = path.name if folder == "." else f"{folder}/{path.name}"
            return Problem(where, f"broken symbolic link to {os.readlink(path)}")
        return Problem(self._key(path), "no such file or directory")

    def _read_file(self, path: Path) -> Iterator[Document | Problem]:
        if not path.exists():
            yield self._missing(path)
            return
        source = self._key(path)
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            yield Problem(source, f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
            return
        try:
            if _looks_binary(path):
                yield Problem(source, "binary file (contains NUL bytes), not text")
            elif suffix == ".jsonl":
                yield from _read_jsonl(path, source, self.options.fields)
            elif suffix == ".csv":
                yield from _read_csv(path, source, self.options)
            else:
                yield from _read_text(path, source, suffix, self.options.max_file_bytes)
        except OSError as exc:
            yield Problem(source, f"cannot read file: {exc.strerror or exc}")


def read_sources(paths: Iterable[str | Path], options: SourceOptions = SourceOptions()) -> Iterator[Document | Problem]:
    """Documents from files and directories (recursive), with problems for what is unusable.

    Kept for callers that need only the items; :class:`Sources` also counts what it skipped.
    """
    yield from Sources(paths, options)


def _walk(
    root: Path, options: SourceOptions, skipped: Counter[str], on_error: Callable[[OSError], None]
) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not _matches(d, options.exclude))
        for name in sorted(files):
            if _matches(name, options.exclude):
                continue
            if _matches(name, options.include):
                yield Path(folder) / name
            else:
                skipped[Path(name).suffix.lower() or "(none)"] += 1


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """Case-insensitive, so ``*.md`` also finds ``README.MD`` on every platform."""
    return any(fnmatch.fnmatch(name.lower(), pattern.lower()) for pattern in patterns)


def _looks_binary(path: Path) -> bool:
    with path.open("rb") as file:
        return b"\x00" in file.read(_BINARY_PROBE_BYTES)


def _count_lines(path: Path) -> int:
    lines, last = 0, b"\n"
    with path.open("rb") as file:
        while block := file.read(_COUNT_BLOCK_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _decode(where: str, data: bytes, line: int | None = None) -> str | Problem:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The utf-8-sig codec reports positions after a leading BOM it has stripped.
        bad = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        if line is None:
            line = data.count(b"\n", 0, bad) + 1
        return Problem(where, f"not valid UTF-8 (byte 0x{data[bad]:02x})", line)


# Text and markdown: one document per file


def _read_text(path: Path, source: str, suffix: str, max_bytes: int) -> Iterator[Document | Problem]:
    size = path.stat().st_size
    if size > max_bytes:
        yield Problem(source, f"file is {size:,} bytes, over the limit of {max_bytes:,}")
        return
    text = _decode(source, path.read_bytes())
    if isinstance(text, Problem):
        yield text
        return
    yield Document(
        id=source,
        text=text,
        title=_markdown_title(text) if suffix != ".txt" else "",
        metadata={"format": suffix.lstrip(".")},
        origin=source,
        source=source,
    )


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:50]:
        stripped = line.strip()
        if stripped.startswith("# "):
            return stripped[2:].strip()
    return ""


# JSONL: one record per line


def _read_jsonl(path: Path, source: str, fields: FieldMap) -> Iterator[Document | Problem]:
    with path.open("rb") as file:
        for number, raw_line in enumerate(file, start=1):
            if not raw_line.strip():
                continue
            # Without its newline, so error columns count within the line.
            line = _decode(source, raw_line.removesuffix(b"\n"), number)
            if isinstance(line, Problem):
                yield line
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Problem(source, f"malformed JSON ({exc.msg} at column {exc.colno})", number)
                continue
            except RecursionError:
                yield Problem(source, "malformed JSON (nested too deeply)", number)
                continue
            if not isinstance(record, dict):
                yield Problem(source, f"expected a JSON object, got {type(record).__name__}", number)
                continue
            yield _record_document(source, number, record, fields)


# CSV: a header row, then one record per row, with typed metadata columns


class _Invalid:
    """Marks a cell that does not parse as a type (None and False are real values)."""


_INVALID = _Invalid()
_INT64 = range(-(2**63), 2**63)
# Guessing is stricter than forcing: a leading zero ("02134", "007") means a code, not a number.
_GUESSED_INT = re.compile(r"[+-]?(?:0|[1-9]\d*)")
_GUESSED_FLOAT = re.compile(r"[+-]?(?:(?:0|[1-9]\d*)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FORCED_INT = re.compile(r"[+-]?\d+")
_FORCED_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SURROGATE = re.compile("[\udc80-\udcff]")  # how surrogateescape carries a byte that is not UTF-8
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?")


def _parse_int(text: str, pattern: re.Pattern[str]) -> int | _Invalid:
    if not pattern.fullmatch(text):
        return _INVALID
    value = int(text)
    return value if value in _INT64 else _INVALID  # what SQLite can store


def _parse_float(text: str, pattern: re.Pattern[str]) -> float | _Invalid:
    if not pattern.fullmatch(text):
        return _INVALID
    value = float(text)
    return value if math.isfinite(value) else _INVALID


def _parse_bool(text: str) -> bool | _Invalid:
    lowered = text.lower()
    return True if lowered == "true" else False if lowered == "false" else _INVALID


def _parse_date(text: str) -> str | _Invalid:
    """ISO dates stay text, which sorts in date order; datetimes are written one way."""
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text).isoformat()
        if _DATETIME.fullmatch(text):
            return datetime.fromisoformat(text).isoformat()
    except ValueError:
        pass
    return _INVALID


def _guess_float(text: str) -> float | _Invalid:
    """A whole number too long for an integer is a code (an ISBN, a card number), not an amount."""
    if _GUESSED_INT.fullmatch(text) and _parse_int(text, _GUESSED_INT) is _INVALID:
        return _INVALID
    return _parse_float(text, _GUESSED_FLOAT)


_GUESSES: dict[str, Callable[[str], MetadataValue | _Invalid]] = {
    "int": lambda text: _parse_int(text, _GUESSED_INT),
    "float": _guess_float,
    "bool": _parse_bool,
    "date": _parse_date,
}
_FORCED: dict[str, Callable[[str], MetadataValue | _Invalid]] = {
    "int": lambda text: _parse_int(text, _FORCED_INT),
    "float": lambda text: _parse_float(text, _FORCED_FLOAT),
    "bool": _parse_bool,
    "date": _parse_date,
    "str": lambda text: text,
}
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "date": "an ISO date (YYYY-MM-DD) or datetime",
}


def _read_csv(path: Path, source: str, options: SourceOptions) -> Iterator[Document | Problem]:
    """Two streaming passes: the first guesses each column's type, the second yields records.

    A column is typed only if every non-empty value in the whole file parses, so one
    "n/a" keeps a column text rather than splitting it into numbers and strings that
    filters would compare differently. Id, title and text columns are never typed.
    """
    csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    rows = _csv_rows(path, source)
    first = next(rows, None)
    if first is None:
        yield Problem(source, "empty CSV file (no header row)")
        return
    if isinstance(first, Problem):
        yield first
        return
    header = first[1]
    fields = options.fields
    roles = {_pick(dict.fromkeys(header), candidates)[0] for candidates in (fields.id, fields.title, fields.text)}
    kinds = _column_kinds(path, source, header, roles, options.csv_types)
    for item in rows:
        if isinstance(item, Problem):
            yield item
            continue
        line, row = item
        if len(row) != len(header):
            yield Problem(source, f"row has {len(row)} fields, the header has {len(header)}", line)
            continue
        record: dict[str, Any] = {}
        for name, kind, cell in zip(header, kinds, row):
            value = _cell_value(cell, kind)
            if value is _INVALID:
                yield Problem(source, f"column {name!r}: {cell.strip()!r} is not {_EXPECTED[kind]}", line)
                break
            record[name] = value
        else:
            yield _record_document(source, line, record, options.fields)


def _cell_value(cell: str, kind: str | None) -> MetadataValue | _Invalid:
    """``kind`` None is a role column (id, title, text), kept exactly as written."""
    if kind is None:
        return cell
    stripped = cell.strip()
    if not stripped:
        return None
    return cell if kind == "str" else _FORCED[kind](stripped)


def _column_kinds(
    path: Path, source: str, header: list[str], roles: set[str | None], forced: Mapping[str, str]
) -> list[str | None]:
    """Each column's type: None for role columns, the forced type, or the guess from pass one."""
    guesses = [set(_GUESSES) if name not in roles and name not in forced else set() for name in header]
    if any(guesses):
        rows = _csv_rows(path, source)
        next(rows, None)
        for item in rows:
            if isinstance(item, Problem) or len(item[1]) != len(header):
                continue
            for candidates, cell in zip(guesses, item[1]):
                if candidates and (value := cell.strip()):
                    candidates.difference_update([kind for kind in candidates if _GUESSES[kind](value) is _INVALID])
    kinds: list[str | None] = []
    for name, candidates in zip(header, guesses):
        if name in roles:
            kinds.append(None)
        elif name in forced:
            kinds.append(forced[name])
        else:
            # int before float: a column of whole numbers is ints, one with a fraction floats.
            kinds.append(next((kind for kind in _GUESSES if kind in candidates), "str"))
    return kinds


def _csv_rows(path: Path, source: str) -> Iterator[tuple[int, list[str]] | Problem]:
    """The non-blank rows of a CSV file, header first, each with its (last) line number.

    Bytes that are not UTF-8 are carried through the csv module as surrogates, so such
    a row is reported with the line of its bad byte and the rows after it still read.
    """
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as file:
        reader = csv.reader(file)
        start = 1
        try:
            for row in reader:
                line = reader.line_num
                row_start, start = start, line + 1
                if not any(cell.strip() for cell in row):
                    continue
                bad = _undecodable(source, row, row_start)
                yield bad if bad else (line, row)
        except csv.Error as exc:
            yield Problem(source, f"unreadable CSV ({exc}); the rest of the file was skipped", reader.line_num)


def _undecodable(source: str, row: list[str], start: int) -> Problem | None:
    """The first undecodable byte of a row, on its own line (quoted cells can span lines)."""
    text = "\x00".join(row)
    bad = _SURROGATE.search(text)
    if bad is None:
        return None
    line = start + text.count("\n", 0, bad.start())
    return Problem(source, f"not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x})", line)


# Records (JSONL objects and CSV rows) to documents


def _pick(record: Mapping[str, Any], candidates: Sequence[str]) -> tuple[str | None, Any]:
    for name in candidates:
        if name in record:
            return name, record[name]
    return None, None


def _record_document(source: str, line: int, record: dict[str, Any], fields: FieldMap) -> Document | Problem:
    text_field, text = _pick(record, fields.text)
    if text_field is None:
        return Problem(source, f"no text field (looked for {', '.join(fields.text)}; record has {', '.join(record) or 'no fields'})", line)
    if not isinstance(text, str):
        return Problem(source, f"field {text_field!r} holds {type(text).__name__} data, not text", line)
    id_field, doc_id = _pick(record, fields.id)
    title_field, title = _pick(record, fields.title)
    used = {text_field, id_field, title_field}
    metadata: dict[str, MetadataValue] = {}
    nested = record.get("metadata") if "metadata" not in used else None
    if isinstance(nested, dict):
        used.add("metadata")
        metadata.update({k: _metadata_value(v) for k, v in nested.items()})
    metadata.update({k: _metadata_value(v) for k, v in record.items() if k not in used})
    origin = f"{source}:{line}"
    return Document(
        id=str(doc_id) if doc_id not in (None, "") else origin,
        text=text,
        title=str(title) if title is not None else "",
        metadata=metadata,
        origin=origin,
        source=source,
    )


def _metadata_value(value: Any) -> MetadataValue:
    """Scalars are kept as they are; lists and objects are kept as their JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False)
