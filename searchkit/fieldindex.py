"""Metadata filters answered from memory: typed field columns over the store's documents.

Answering a filter in SQL means materialising the matching chunk ids out of SQLite on
every search: 36-76 ms for a filter matching 1% of a million chunks, 290-420 ms at 10%.
Here each field a filter has used is held as typed columns, one slot per document that
has chunks: its numbers (NaN where it holds none), its booleans, and its strings as codes
into the sorted distinct strings, so an ordering on text is a comparison of codes. A
filter is then a few vectorised comparisons and a gather from documents to chunk ids.

The columns are a cache of the store, which stays the truth and the reference: they are
read in one read transaction together with the store's generation, and a search that
finds the store at a later generation (a write by this or any other process) reads them
again before it filters, so a filter never acts on stale data. The semantics are the SQL
path's exactly (:mod:`searchkit.filters`), and ``tests/test_fieldindex.py`` checks that on
random filters and metadata. What cannot be compared exactly in float64 (integers beyond
2**53, stored or asked for) is left to SQL: :meth:`FieldIndex.chunk_ids` returns None.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchkit.filters import BUILTIN_FIELDS, Filter
from searchkit.store import Store, value_type

__all__ = ["FieldIndex"]

# Integers beyond this magnitude are not all exact in float64.
_EXACT_INTEGERS = 2**53
_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}
_GENERATION = "SELECT value FROM state WHERE key = 'generation'"
# Documents from which a write makes the next filtered search go to SQL rather than re-read the columns at once.
REREAD_AT_ONCE_BELOW = 50_000
# The covering index on chunks.document_pk answers this without reading chunk rows.
_CHUNKS = "SELECT document_pk, id FROM chunks ORDER BY document_pk, id"
_FIELD_TYPES = "SELECT types FROM fields WHERE name = ?"
_VALUES = "SELECT document_pk, value FROM field_values WHERE name = ? AND typeof(value) = ?"
_JSON_BOOLS = (
    "SELECT d.pk FROM documents AS d, json_each(d.meta) AS j WHERE j.key = ? AND j.type IN ('true', 'false')"
)
_BUILTIN = {"doc_id": "SELECT pk, doc_id FROM documents", "title": "SELECT pk, title FROM documents"}


class _Unanswerable(Exception):
    """Raised inside an evaluation that memory cannot answer exactly; the caller uses SQL."""


@dataclass(frozen=True)
class _Matches:
    """Documents matching part of a filter: sorted positions when they are few, else a mask.

    A selective condition is a range of a sorted column (a binary search and a sort of
    the few positions in it), so a filter matching 0.1% of a million documents never
    touches the other 99.9%; wide ones are vectorised comparisons over the whole column.
    """

    size: int
    positions: np.ndarray | None = None
    mask: np.ndarray | None = None

    def as_mask(self) -> np.ndarray:
        if self.mask is not None:
            return self.mask
        mask = np.zeros(self.size, dtype=bool)
        mask[self.positions] = True
        return mask

    def as_positions(self) -> np.ndarray:
        return self.positions if self.positions is not None else np.flatnonzero(self.mask)

    def __and__(self, other: _Matches) -> _Matches:
        if self.positions is not None and other.positions is not None:
            return _Matches(self.size, positions=np.intersect1d(self.positions, other.positions, assume_unique=True))
        if self.positions is not None or other.positions is not None:
            few, many = (self, other) if self.positions is not None else (other, self)
            return _Matches(self.size, positions=few.positions[many.mask[few.positions]])
        return _Matches(self.size, mask=self.mask & other.mask)

    def __or__(self, other: _Matches) -> _Matches:
        if self.positions is not None and other.positions is not None:
            return _Matches(self.size, positions=np.union1d(self.positions, other.positions))
        return _Matches(self.size, mask=self.as_mask() | other.as_mask())

    def __invert__(self) -> _Matches:
        return _Matches(self.size, mask=~self.as_mask())


# A range of a sorted column holding at most this share of the documents is taken as positions.
_FEW = 1 / 32


@dataclass
class _Column:
    """One field over the snapshot's documents; every array has one slot per document."""

    present: np.ndarray  # bool: holds a non-null value
    numbers: np.ndarray | None = None  # float64, NaN where not a number
    bools: np.ndarray | None = None  # int8: 0, 1, or -1 where not a boolean
    codes: np.ndarray | None = None  # int32: index into strings, -1 where not a string
    strings: list[str] = field(default_factory=list)  # sorted: code order is SQLite's BINARY order
    lookup: dict[str, int] = field(default_factory=dict)
    exact: bool = True  # every stored integer is exact in float64
    # (sorted values, their positions) of the numbers and of the string codes, made on first use.
    _sorted: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def equal(self, value: Any) -> _Matches:
        """Documents whose value equals the non-null ``value``, of the same kind."""
        return self.member([value])

    def member(self, values: list[Any]) -> _Matches:
        """Documents whose value equals one of the non-null ``values``."""
        matches = self._none()
        codes = [self.lookup[v] for v in values if value_type(v) == "string" and v in self.lookup]
        if codes:
            matches = matches | self._ranges("codes", [(code, code, True, True) for code in codes])
        numbers = [v for v in values if value_type(v) == "number"]
        for number in numbers:
            _check_exact(number)
        numbers = [v for v in numbers if v == v]  # NaN (SQLite binds it as null) equals nothing
        if numbers and self.numbers is not None:
            matches = matches | self._ranges("numbers", [(number, number, True, True) for number in numbers])
        bools = [int(v) for v in values if value_type(v) == "bool"]
        if bools and self.bools is not None:
            matches = matches | _Matches(len(self.present), mask=np.isin(self.bools, bools))
        return matches

    def ordered(self, op: str, value: Any) -> _Matches:
        """Documents whose value of ``value``'s kind compares with it under ``op``."""
        if isinstance(value, str):
            if self.codes is None:
                return self._none()
            # Codes of strings sorting before ``value``: < lo; equal to it: [lo, hi).
            lo, hi = bisect.bisect_left(self.strings, value), bisect.bisect_right(self.strings, value)
            bounds = {"$gt": (hi, None, True, True), "$gte": (lo, None, True, True),
                      "$lt": (None, lo, True, False), "$lte": (None, hi, True, False)}[op]
            return self._ranges("codes", [bounds])
        _check_exact(value)
        if self.numbers is None or value != value:  # NaN (SQLite binds it as null) orders nothing
            return self._none()
        bounds = {"$gt": (value, None, False, True), "$gte": (value, None, True, True),
                  "$lt": (None, value, True, False), "$lte": (None, value, True, True)}[op]
        return self._ranges("numbers", [bounds])

    def _ranges(self, kind: str, ranges: list[tuple[Any, Any, bool, bool]]) -> _Matches:
        """Documents whose ``kind`` value lies in one of the (low, high, low included, high included) ranges."""
        values, positions = self._sorted_column(kind)
        slices = []
        for low, high, low_in, high_in in ranges:
            start = 0 if low is None else int(np.searchsorted(values, low, "left" if low_in else "right"))
            stop = len(values) if high is None else int(np.searchsorted(values, high, "right" if high_in else "left"))
            if stop > start:
                slices.append(positions[start:stop])
        found = np.concatenate(slices) if slices else np.zeros(0, dtype=np.int64)
        if len(found) <= _FEW * len(self.present):
            # One range holds each position once: a sort is enough (np.unique hashes, 0.7 ms for 10,000).
            return _Matches(len(self.present), positions=np.sort(found) if len(slices) == 1 else np.unique(found))
        mask = np.zeros(len(self.present), dtype=bool)
        mask[found] = True
        return _Matches(len(self.present), mask=mask)

    def _sorted_column(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind not in self._sorted:
            column = self.numbers if kind == "numbers" else self.codes
            if column is None:
                self._sorted[kind] = (np.zeros(0), np.zeros(0, dtype=np.int64))
            else:
                held = np.flatnonzero(~np.isnan(column) if kind == "numbers" else column >= 0)
                order = np.argsort(column[held], kind="stable")
                self._sorted[kind] = (column[held][order], held[order])
        return self._sorted[kind]

    def _none(self) -> _Matches:
        return _Matches(len(self.present), positions=np.zeros(0, dtype=np.int64))


def _check_exact(value: Any) -> None:
    if isinstance(value, int) and not -_EXACT_INTEGERS <= value <= _EXACT_INTEGERS:
        raise _Unanswerable


@dataclass
class _Snapshot:
    """The store's chunks grouped by document at one generation, and the field columns read at it."""

    generation: int
    doc_pks: np.ndarray  # sorted pks of the documents that have chunks
    chunk_ids: np.ndarray  # grouped by document, ascending within each
    starts: np.ndarray  # the first position in chunk_ids of each document, and the total at the end
    columns: dict[str, _Column] = field(default_factory=dict)

    def positions(self, pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the pks among the documents, which pks have chunks)."""
        where = np.searchsorted(self.doc_pks, pks)
        found = where < len(self.doc_pks)
        found[found] = self.doc_pks[where[found]] == pks[found]
        return where, found

    def chunks_of(self, matches: _Matches) -> np.ndarray:
        """The sorted chunk ids of the matching documents."""
        docs = matches.as_positions()
        if len(self.chunk_ids) == len(self.doc_pks):  # one chunk per document: positions coincide
            picked = self.chunk_ids[docs]
        else:
            first, counts = self.starts[docs], self.starts[docs + 1] - self.starts[docs]
            offsets = np.repeat(first - np.cumsum(counts) + counts, counts)
            picked = self.chunk_ids[offsets + np.arange(int(counts.sum()))]
        return np.sort(picked)


class FieldIndex:
    """The chunk ids matching a filter, answered from typed columns kept in step with the store."""

    def __init__(self, store: Store, *, reread_at_once_below: int = REREAD_AT_ONCE_BELOW) -> None:
        self.store = store
        self.reread_at_once_below = reread_at_once_below
        self._snapshot: _Snapshot | None = None
        self._settling: int | None = None  # a generation seen once since the snapshot went stale
        self._lock = threading.Lock()

    def chunk_ids(self, compiled: Filter, generation: int | None = None) -> np.ndarray | None:
        """The sorted ids of the chunks matching ``compiled``, as of the store's generation
        ``generation`` or later (the current one when None); None when only SQL can answer."""
        names = set(_field_names(compiled.where))
        try:
            with self._lock:
                snapshot = self._current(names, generation)
            return snapshot.chunks_of(_evaluate(compiled.where, snapshot))
        except _Unanswerable:
            return None

    def _current(self, names: set[str], generation: int | None) -> _Snapshot:
        """A snapshot at ``generation`` or later holding columns for ``names``, read again if stale."""
        snapshot = self._snapshot
        stale = snapshot is None or (generation is not None and snapshot.generation < generation)
        if not stale and names <= snapshot.columns.keys() and generation is not None:
            return snapshot
        with self._reading() as cursor:
            now = _read_generation(cursor)
            if snapshot is not None and now != snapshot.generation and len(snapshot.doc_pks) >= self.reread_at_once_below:
                # A large collection that a writer moved on: re-reading it costs seconds (2.4 s at a
                # million documents), so SQL answers until the store stays at one generation between
                # two filtered searches, and a steady writer never makes every search pay that.
                if self._settling != now:
                    self._settling = now
                    raise _Unanswerable
            if snapshot is None or now != snapshot.generation:
                snapshot = _read_chunks(cursor, now)
            for name in names - snapshot.columns.keys():
                snapshot.columns[name] = _read_column(cursor, snapshot, name)
        self._snapshot = snapshot
        return snapshot

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Cursor]:
        """A driver cursor in one read transaction: generation, chunks and columns agree."""
        with self.store.cursor(shared=False) as cursor:
            cursor.execute("BEGIN")  # ended by Store.cursor
            yield cursor


def _field_names(where: Mapping[str, Any]) -> Iterator[str]:
    for key, value in where.items():
        if key in ("$and", "$or"):
            for part in value:
                yield from _field_names(part)
        else:
            yield key


def _evaluate(where: Mapping[str, Any], snapshot: _Snapshot) -> _Matches:
    """The documents matching a validated filter (as ``filters.compile_filter`` leaves it)."""
    matches: _Matches | None = None
    for key, value in where.items():
        if key == "$and" or key == "$or":
            parts = [_evaluate(part, snapshot) for part in value]
            part = parts[0]
            for other in parts[1:]:
                part = part & other if key == "$and" else part | other
        else:
            part = _field_condition(snapshot.columns[key], value)
        matches = part if matches is None else matches & part
    assert matches is not None  # validated filters are never empty
    return matches


def _field_condition(column: _Column, condition: Any) -> _Matches:
    if not isinstance(condition, Mapping):
        condition = {"$eq": condition}
    matches: _Matches | None = None
    for op, value in condition.items():
        part = _compare(column, op, value)
        matches = part if matches is None else matches & part
    assert matches is not None
    return matches


def _compare(column: _Column, op: str, value: Any) -> _Matches:
    """One comparison, as filters.py's SQL has it: negations are "no value matches the positive one"."""
    if not column.exact:
        raise _Unanswerable
    present = _Matches(len(column.present), mask=column.present)
    if op in ("$eq", "$ne") and value is None:
        return ~present if op == "$eq" else present
    if op == "$eq":
        return column.equal(value)
    if op == "$ne":
        return ~column.equal(value)
    if op in ("$in", "$nin"):  # null in the list means "missing", as $eq null does
        matches = column.member([item for item in value if item is not None])
        if any(item is None for item in value):
            matches = matches | ~present
        return matches if op == "$in" else ~matches
    return column.ordered(op, value)


def _read_generation(cursor: sqlite3.Cursor) -> int:
    row = cursor.execute(_GENERATION).fetchone()
    return int(row[0]) if row else -1


def _read_chunks(cursor: sqlite3.Cursor, generation: int) -> _Snapshot:
    pairs = _int_pairs(cursor.execute(_CHUNKS).fetchall())
    doc_pks, starts = np.unique(pairs[:, 0], return_index=True)
    return _Snapshot(generation, doc_pks, pairs[:, 1].copy(), np.append(starts, len(pairs)).astype(np.int64))


def _int_pairs(rows: list[tuple[int, int]]) -> np.ndarray:
    """Rows of two integers as an (n, 2) array, several times faster than ``np.array(rows)`` at a million rows."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=2 * len(rows)).reshape(-1, 2)


def _read_column(cursor: sqlite3.Cursor, snapshot: _Snapshot, name: str) -> _Column:
    """A field's column, from the (field, value) index of field_values (or documents for doc_id and title)."""
    count = len(snapshot.doc_pks)
    column = _Column(present=np.zeros(count, dtype=bool))
    if name in BUILTIN_FIELDS:
        _fill_strings(column, snapshot, cursor.execute(_BUILTIN[name]).fetchall())
        return column
    row = cursor.execute(_FIELD_TYPES, (name,)).fetchone()
    kinds = set(row[0].split(",")) if row and row[0] else set()
    integers = _int_pairs(cursor.execute(_VALUES, (name, "integer")).fetchall())
    reals = cursor.execute(_VALUES, (name, "real")).fetchall()
    strings = cursor.execute(_VALUES, (name, "text")).fetchall()
    # SQLite holds booleans as the integers 0 and 1; the field registry says which they are,
    # and where a field has held both kinds, the document's JSON does.
    if "bool" in kinds and "number" in kinds:
        bool_pks = np.array([r[0] for r in cursor.execute(_JSON_BOOLS, (name,))], dtype=np.int64)
        is_bool = np.isin(integers[:, 0], bool_pks)
    else:
        is_bool = np.full(len(integers), "bool" in kinds)
    if is_bool.any():
        where, found = snapshot.positions(integers[is_bool, 0])
        column.bools = np.full(count, -1, dtype=np.int8)
        column.bools[where[found]] = integers[is_bool, 1][found]
        column.present[where[found]] = True
    numbers = integers[~is_bool]
    column.exact = not np.any((numbers[:, 1] > _EXACT_INTEGERS) | (numbers[:, 1] < -_EXACT_INTEGERS))
    real_pks = np.fromiter((r[0] for r in reals), dtype=np.int64, count=len(reals))
    number_pks = np.concatenate([numbers[:, 0], real_pks])
    if len(number_pks):
        values = np.concatenate([numbers[:, 1].astype(np.float64), np.fromiter((r[1] for r in reals), np.float64, len(reals))])
        where, found = snapshot.positions(number_pks)
        column.numbers = np.full(count, np.nan)
        column.numbers[where[found]] = values[found]
        column.present[where[found]] = True
    _fill_strings(column, snapshot, strings)
    return column


def _fill_strings(column: _Column, snapshot: _Snapshot, rows: list[tuple[int, str]]) -> None:
    if not rows:
        return
    pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    values = np.array([r[1] for r in rows], dtype=object)
    where, found = snapshot.positions(pks)
    distinct, codes = np.unique(values[found], return_inverse=True)  # Python order: by code point, as UTF-8 bytes sort
    column.strings = distinct.tolist()
    column.lookup = {value: code for code, value in enumerate(column.strings)}
    column.codes = np.full(len(column.present), -1, dtype=np.int32)
    column.codes[where[found]] = codes.astype(np.int32)
    column.present[where[found]] = True
