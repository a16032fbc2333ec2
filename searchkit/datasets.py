"""Loading labeled collections in BEIR layout for evaluation.

Real-world dumps of BEIR folders are often slightly broken (a truncated line, a stray
row, qrels naming a document that was filtered out of the corpus).  Refusing the whole set
over one bad line makes evaluation brittle, and silently dropping lines makes figures
unexplainable, so every bad line is skipped *and* reported as a :class:`DatasetProblem`.
Only a missing folder or file is fatal, because then nothing meaningful can be measured.

The corpus is only streamed for its ids here: texts are read by the indexing code, and
corpora can be far larger than memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchkit.errors import SearchkitError

__all__ = ["BeirDataset", "DatasetError", "DatasetProblem", "load_beir"]

_LAYOUT = "a BEIR dataset folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
_INTEGER = re.compile(r"[+-]?\d+")


class DatasetError(SearchkitError, ValueError):
    """The folder cannot be used at all (missing folder or required file)."""


@dataclass(frozen=True)
class DatasetProblem:
    """One skipped line or entry, located so it can be fixed at its source."""

    path: Path
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


@dataclass
class BeirDataset:
    """Queries and judgements of one split; the corpus stays on disk at ``corpus_path``."""

    root: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    problems: list[DatasetProblem]

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"


def _required_paths(root: Path, split: str) -> list[Path]:
    return [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"]


def _check_layout(root: Path, split: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; {_LAYOUT}")
    missing = [path for path in _required_paths(root, split) if not path.is_file()]
    if not missing:
        return
    message = f"missing {', '.join(str(path) for path in missing)}; {_LAYOUT}"
    splits = sorted(path.stem for path in (root / "qrels").glob("*.tsv"))
    if splits:
        message += f" (qrels splits present: {', '.join(splits)})"
    raise DatasetError(message)


def _read_lines(path: Path, problems: list[DatasetProblem]) -> Iterator[tuple[int, str]]:
    """Non-blank lines with 1-based numbers; undecodable lines become problems."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                problems.append(DatasetProblem(path, number, f"not valid UTF-8 ({error.reason})"))
                continue
            if line.strip():
                yield number, line


def _record_id(record: dict[str, Any]) -> str | None:
    """The record's id as a string; BEIR writes "_id", other dumps "id", a few use numbers."""
    value = record.get("_id", record.get("id"))
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _read_records(path: Path, problems: list[DatasetProblem]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records with a usable id and a string "text", each id once; everything else is a problem."""
    seen: set[str] = set()
    for number, line in _read_lines(path, problems):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(DatasetProblem(path, number, f"invalid JSON ({error.msg})"))
            continue
        reason = _record_problem(record, seen)
        if reason is not None:
            problems.append(DatasetProblem(path, number, reason))
            continue
        record_id = _record_id(record)
        seen.add(record_id)
        yield record_id, record


def _record_problem(record: Any, seen: set[str]) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    record_id = _record_id(record)
    if record_id is None:
        return 'missing or empty "_id"'
    if not isinstance(record.get("text"), str):
        return f'record {record_id!r} has no string "text"'
    if record_id in seen:
        return f"duplicate id {record_id!r} (first occurrence kept)"
    return None


def _load_queries(path: Path, problems: list[DatasetProblem]) -> dict[str, str]:
    return {query_id: record["text"] for query_id, record in _read_records(path, problems)}


def _corpus_ids(path: Path, problems: list[DatasetProblem]) -> set[str]:
    return {doc_id for doc_id, _ in _read_records(path, problems)}


def _is_header(number: int, fields: list[str]) -> bool:
    """BEIR writes "query-id<TAB>corpus-id<TAB>score" first; other dumps have no header."""
    return number == 1 and len(fields) == 3 and not _INTEGER.fullmatch(fields[2])


def _qrels_rows(path: Path, problems: list[DatasetProblem]) -> Iterator[tuple[int, str, str, int]]:
    """Well-formed (line, query id, doc id, grade) rows; malformed rows become problems."""
    for number, line in _read_lines(path, problems):
        fields = [field.strip() for field in line.split("\t")]
        if _is_header(number, fields):
            continue
        if len(fields) != 3 or not all(fields):
            problems.append(DatasetProblem(path, number, "expected 3 tab-separated fields: query-id, corpus-id, score"))
        elif not _INTEGER.fullmatch(fields[2]):
            problems.append(DatasetProblem(path, number, f"score {fields[2]!r} is not an integer"))
        else:
            yield number, fields[0], fields[1], int(fields[2])


def _load_qrels(
    path: Path, queries: dict[str, str], corpus_ids: set[str] | None, problems: list[DatasetProblem]
) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for number, query_id, doc_id, grade in _qrels_rows(path, problems):
        reason = None
        if query_id not in queries:
            reason = f"query {query_id!r} is not in queries.jsonl"
        elif corpus_ids is not None and doc_id not in corpus_ids:
            reason = f"document {doc_id!r} is not in corpus.jsonl"
        elif doc_id in qrels.get(query_id, {}):
            reason = f"duplicate judgement of {query_id!r}/{doc_id!r} (first occurrence kept)"
        if reason is not None:
            problems.append(DatasetProblem(path, number, reason))
            continue
        qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels


def load_beir(root: str | Path, split: str = "test", *, check_corpus: bool = True) -> BeirDataset:
    """Load one split's queries and qrels, reporting (not raising on) bad lines.

    ``queries`` keeps only the queries judged in this split, as BEIR does: queries.jsonl is
    shared by all splits.  ``check_corpus=False`` skips the pass over corpus.jsonl, and with
    it the corpus problems and the check that judged documents exist.
    """
    root = Path(root)
    _check_layout(root, split)
    corpus_path, queries_path, qrels_path = _required_paths(root, split)
    problems: list[DatasetProblem] = []
    all_queries = _load_queries(queries_path, problems)
    corpus_ids = _corpus_ids(corpus_path, problems) if check_corpus else None
    qrels = _load_qrels(qrels_path, all_queries, corpus_ids, problems)
    queries = {query_id: text for query_id, text in all_queries.items() if query_id in qrels}
    return BeirDataset(root=root, queries=queries, qrels=qrels, problems=problems)
