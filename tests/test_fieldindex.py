"""The in-memory field index answers every filter exactly as the SQL path does, and never from stale data.

The SQL compiled by :mod:`searchkit.filters` is the reference: for random metadata
(numbers, booleans that must never equal 0 and 1, strings, nulls, missing fields, integers
beyond float64's exact range) and random filters, both must give the same chunk ids.
No model is loaded: documents go into a store with stand-in vectors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchkit.document import Document
from searchkit.errors import FilterError
from searchkit import fieldindex
from searchkit.fieldindex import FieldIndex
from searchkit.filters import Filter, compile_filter
from searchkit.store import Store, StoredChunk

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = ["a", "b", "c"]

NUMBERS = st.integers(-3, 3) | st.sampled_from([0.0, 1.0, -0.0, 0.5, 2.5, -1e300, 2**60, 2**53 + 1])
STRINGS = st.sampled_from(["", "a", "b", "ab", "B", "é", "10", "2", "z\u00ff", "\U0001f600"])
ODD = st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**63 - 1, 2**62, "zz"])
# Each field has its own kinds: "n" numbers and booleans (which must never meet), "s" text,
# "m" anything; nulls and absences everywhere.
STORED = {
    "n": st.none() | st.booleans() | NUMBERS,
    "s": st.none() | STRINGS,
    "m": st.none() | st.booleans() | NUMBERS | STRINGS,
}
QUERIED = {"n": STORED["n"] | ODD, "s": STORED["s"] | ODD, "m": STORED["m"] | ODD,
           "doc_id": st.none() | st.sampled_from(["d0", "d1", "d3", "d", "e1"]),
           "title": st.none() | st.sampled_from(["Cat", "dog", "", "é", "Zebra", "Dog"])}
FIELDS = list(STORED)
metadata = st.fixed_dictionaries({}, optional=STORED)
# Documents every store starts with, so each field exists and "m" has held every kind.
SEEDS = [("Cat", {"n": 2, "s": "ab", "m": True}, 1), ("dog", {"n": False, "m": "x"}, 2), ("", {"m": 1.5}, 1)]
ops = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"])


@st.composite
def conditions(draw: st.DrawFn, name: str) -> object:
    values = QUERIED[name]
    op = draw(ops)
    if op in ("$in", "$nin"):
        value: object = draw(st.lists(values, min_size=1, max_size=4))
    else:
        value = draw(values)
    return {op: value} if draw(st.booleans()) or op != "$eq" else value


field_filters = st.lists(
    st.sampled_from(list(QUERIED)).flatmap(lambda name: st.tuples(st.just(name), conditions(name))), min_size=1, max_size=2
).map(dict)
filters = st.recursive(
    field_filters,
    lambda inner: st.builds(lambda key, parts: {key: parts}, st.sampled_from(["$and", "$or"]), st.lists(inner, min_size=1, max_size=3))
    | st.builds(lambda left, right: {**left, **right}, inner, inner),
    max_leaves=6,
)


@pytest.fixture
def new_store() -> Iterator[callable]:
    stores: list[Store] = []
    with tempfile.TemporaryDirectory() as folder:
        def make() -> Store:
            store = Store(Path(folder) / f"store{len(stores)}.sqlite", create=True)
            stores.append(store)
            return store
        yield make
        for store in stores:
            store.close()


def write(store: Store, docs: list[tuple[str, str, dict, int]]) -> None:
    """Each (id, title, metadata, chunk count) as a document with that many chunks and stand-in vectors."""
    new = []
    for doc_id, title, meta, count in docs:
        text = " ".join(f"word{i}" for i in range(count))
        stored = []
        position = 0
        for ordinal in range(count):
            piece = f"word{ordinal}"
            stored.append(StoredChunk(ordinal, position, position + len(piece), piece))
            position += len(piece) + 1
        new.append((Document(doc_id, text, title=title, metadata=meta), stored, np.ones((count, 4), np.float32)))
    store.write(new)


def reference(store: Store, compiled: Filter) -> list[int]:
    return sorted(int(i) for i in store.chunk_ids_where(compiled.condition))


def compiled_or_none(where: dict, store: Store) -> Filter | None:
    try:
        return compile_filter(where, store.field_types())
    except FilterError:
        return None


documents = st.lists(
    st.tuples(st.sampled_from(["Cat", "dog", "", "é", "Zebra"]), metadata, st.integers(1, 3)), min_size=0, max_size=12
).map(lambda docs: SEEDS + docs)


@pytest.mark.parametrize("few", [0.0, 1.0], ids=["masks", "positions"])
@EXAMPLES
@given(docs=documents, wheres=st.lists(filters, min_size=1, max_size=6))
def test_memory_and_sql_give_the_same_chunks(new_store, monkeypatch, few: float, docs: list, wheres: list[dict]) -> None:
    """Both representations of a partial match (a mask, sorted positions) give SQL's answer."""
    monkeypatch.setattr(fieldindex, "_FEW", few)
    store = new_store()
    write(store, [(f"d{i}", title, meta, count) for i, (title, meta, count) in enumerate(docs)])
    fields = FieldIndex(store)
    for where in wheres:
        compiled = compiled_or_none(where, store)
        if compiled is None:
            continue
        found = fields.chunk_ids(compiled, store.generation())
        if found is None:  # integers beyond float64's exact range: left to SQL, and only then
            assert _touches_big_integers(where, store)
            continue
        assert found.tolist() == reference(store, compiled), where


def _touches_big_integers(where: object, store: Store) -> bool:
    big = lambda value: isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53  # noqa: E731
    stored = any(
        big(value) for row in store.documents_page(0, 10_000)[1] for value in row.metadata.values()
    )
    return stored or _any_value(where, big)


def _any_value(where: object, test) -> bool:
    if isinstance(where, dict):
        return any(_any_value(v, test) for v in where.values())
    if isinstance(where, list):
        return any(_any_value(v, test) for v in where)
    return test(where)


@EXAMPLES
@given(first=documents, second=documents, where=filters, drop=st.integers(0, 5), retag=metadata)
def test_writes_of_another_store_handle_are_seen_before_the_next_filter(
    new_store, first: list, second: list, where: dict, drop: int, retag: dict
) -> None:
    """Another process's writes (a second Store on the same file) bump the generation; the index follows."""
    store = new_store()
    write(store, [(f"d{i}", t, m, c) for i, (t, m, c) in enumerate(first)])
    fields = FieldIndex(store)
    compiled = compiled_or_none(where, store)
    if compiled is not None:
        fields.chunk_ids(compiled, store.generation())  # columns now cached
    other = Store(store.path)
    try:
        write(other, [(f"e{i}", t, m, c) for i, (t, m, c) in enumerate(second)])
        other.delete([f"d{i}" for i in range(drop)])
        states = other.document_states([f"d{i}" for i in range(len(first))])
        if states:
            pk = next(iter(states.values())).pk
            doc_id = next(iter(states))
            other.write([], metadata_only=[(pk, Document(doc_id, "x", metadata=retag))])
    finally:
        other.close()
    compiled = compiled_or_none(where, store)
    if compiled is None:
        return
    found = fields.chunk_ids(compiled, store.generation())
    if found is not None:
        assert found.tolist() == reference(store, compiled)


def test_booleans_never_equal_numbers_and_nulls_mean_missing(new_store) -> None:
    store = new_store()
    write(store, [("t", "", {"f": True}, 1), ("one", "", {"f": 1}, 2), ("zero", "", {"f": 0.0}, 1),
                  ("null", "", {"f": None}, 1), ("none", "", {}, 1), ("text", "", {"f": "1"}, 1)])
    fields = FieldIndex(store)
    ids = {doc: [int(c) for c in store.chunk_ids_where(compile_filter({"doc_id": doc}, store.field_types()).condition)]
           for doc in ("t", "one", "zero", "null", "none", "text")}

    def matching(where: dict) -> set[str]:
        found = set(fields.chunk_ids(compile_filter(where, store.field_types()), store.generation()).tolist())
        return {doc for doc, chunk_ids in ids.items() if set(chunk_ids) <= found and chunk_ids}

    assert matching({"f": 1}) == {"one"}
    assert matching({"f": True}) == {"t"}
    assert matching({"f": {"$gte": 0}}) == {"one", "zero"}
    assert matching({"f": {"$lt": "2"}}) == {"text"}
    assert matching({"f": None}) == {"null", "none"}
    assert matching({"f": {"$ne": 1}}) == {"t", "zero", "null", "none", "text"}
    # null in a list means "missing", as {"f": None} does: not missing and not true.
    assert matching({"f": {"$nin": [None, True]}}) == {"one", "zero", "text"}
    assert matching({"f": {"$in": [None, True]}}) == {"t", "null", "none"}


def test_a_doc_id_not_in_list_holding_null_matches_the_other_documents(new_store) -> None:
    """Regression: SQL's NOT IN with a NULL in the list matched nothing on doc_id and title."""
    store = new_store()
    write(store, [("a", "", {}, 1), ("b", "", {}, 1)])
    compiled = compile_filter({"doc_id": {"$nin": [None, "a"]}}, store.field_types())
    assert len(reference(store, compiled)) == 1
    assert FieldIndex(store).chunk_ids(compiled, store.generation()).tolist() == reference(store, compiled)


def test_a_large_collection_moved_on_by_a_writer_is_answered_by_sql_until_it_settles(new_store) -> None:
    """Re-reading the columns of a million documents takes seconds: a steady writer must not make every search pay it."""
    store = new_store()
    write(store, [(f"d{i}", "", {"n": i}, 1) for i in range(6)])
    fields = FieldIndex(store, reread_at_once_below=5)
    where = {"n": {"$gte": 3}}
    assert fields.chunk_ids(compile_filter(where, store.field_types()), store.generation()).tolist() == reference(
        store, compile_filter(where, store.field_types()))
    write(store, [("d9", "", {"n": 9}, 2)])
    compiled = compile_filter(where, store.field_types())
    assert fields.chunk_ids(compiled, store.generation()) is None  # stale and large: SQL answers this one
    assert fields.chunk_ids(compiled, store.generation()).tolist() == reference(store, compiled)  # settled: read again
    small = FieldIndex(store)  # below the threshold a write is followed at once
    assert small.chunk_ids(compiled, store.generation()).tolist() == reference(store, compiled)
    write(store, [("d10", "", {"n": 10}, 1)])
    compiled = compile_filter(where, store.field_types())
    assert small.chunk_ids(compiled, store.generation()).tolist() == reference(store, compiled)
