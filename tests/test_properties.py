"""Properties that must hold for any input at the library's text and data boundaries.

Each boundary either accepts an input or rejects it with the one error type its callers
catch (a ``SearchkitError``); any other exception is a crash a user would see as a
traceback. No model is loaded: these run in seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from searchkit.config import IndexConfig
from searchkit.errors import ConfigError, FilterError
from searchkit.filters import compile_where, parse_condition
from searchkit.lexical import QueryAnalyzer
from searchkit.store import _schema, documents

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = {"topic": {"string"}, "year": {"number", "string"}, "flag": {"bool"}, "n": {"number"}}

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
# Keys a filter might hold: real operators and fields, near misses, and anything at all.
filter_keys = st.sampled_from(
    ["$and", "$or", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex",
     "topic", "year", "flag", "n", "doc_id", "title", "colour", ""]
) | st.text(max_size=6)
filters = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(filter_keys, inner, max_size=4),
    max_leaves=12,
)
# Text near the condition grammar: field names, operator characters, quotes, commas, keywords.
condition_tokens = list("=!<> ,'\"-.0123456789ynx_eé\t\n") + [" in ", " not in ", "true", "null", "year", "topic", "1e999"]
condition_text = st.lists(st.sampled_from(condition_tokens), max_size=12).map("".join) | st.text(max_size=20)


@pytest.fixture(scope="module")
def empty_store() -> Iterator[object]:
    """An in-memory database with the store's tables, to run compiled filters against."""
    engine = create_engine("sqlite://")
    _schema.create_all(engine)
    yield engine
    engine.dispose()


def _run(engine: object, where: object, known: object) -> None:
    condition = compile_where(where, known)
    if condition is not None:
        with engine.connect() as conn:
            conn.execute(select(documents.c.pk).where(condition)).all()


@EXAMPLES
@given(text=condition_text)
def test_cli_conditions_parse_or_fail_with_a_filter_error(empty_store, text: str) -> None:
    for known in (FIELDS, set(FIELDS)):
        try:
            parsed = parse_condition(text, known)
        except FilterError:
            continue
        (field,) = parsed  # a condition that parses compiles and runs, once its field exists
        _run(empty_store, parsed, {field: frozenset(), **FIELDS} if known is FIELDS else known | {field})


@EXAMPLES
@given(where=filters)
def test_any_filter_compiles_runs_or_fails_with_a_filter_error(empty_store, where: object) -> None:
    for known in (FIELDS, set(FIELDS)):
        try:
            _run(empty_store, where, known)
        except FilterError:
            pass


@EXAMPLES
@given(where=st.lists(condition_text, max_size=3))
def test_lists_of_cli_conditions_compile_runs_or_fail_with_a_filter_error(empty_store, where: list[str]) -> None:
    try:
        _run(empty_store, where, FIELDS)
    except FilterError:
        pass


fts_tokens = list('"*-^:()+{}_. ') + ["AND", "OR", "NOT", "NEAR", "fox", "é", "\u0301", "\u200b", "ǅ"]


@pytest.fixture(scope="module")
def fts_table() -> Iterator[sqlite3.Connection]:
    """An FTS5 table built as the store builds its full-text index."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61 remove_diacritics 2')")
    db.execute("INSERT INTO t (body) VALUES ('the quick brown fox'), ('NEAR AND OR NOT'), ('café naïve 2019')")
    yield db
    db.close()


@EXAMPLES
@given(query=st.text(max_size=40) | st.lists(st.sampled_from(fts_tokens), max_size=12).map("".join))
def test_any_query_becomes_index_terms_that_look_up_safely(fts_table: sqlite3.Connection, query: str) -> None:
    fts_table.execute("CREATE VIRTUAL TABLE IF NOT EXISTS v USING fts5vocab(t, 'instance')")
    for term in QueryAnalyzer().terms(query):
        assert term and term == term.lower()
        fts_table.execute("SELECT doc, count(*) FROM v WHERE term = ? GROUP BY doc", (term,)).fetchall()


json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
VALID_CONFIG = {
    "model": {"name": "m", "weights_sha256": "53aa5117", "dimension": 384, "normalize": True, "max_seq_length": 256},
    "chunking": {"max_tokens": 200, "overlap_tokens": 32, "max_chunks": 0},
    "vectors": {"description": "HNSW32", "metric": "cosine", "ef_search": 128, "nprobe": 32},
    "schema_version": 1,
}
SETTINGS = [(section, key) for section, values in VALID_CONFIG.items() if isinstance(values, dict) for key in values]
DELETE = object()


def _mutated(changes: list[tuple[tuple[str, ...], object]]) -> dict:
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in VALID_CONFIG.items()}
    for path, value in changes:
        *parents, key = path
        target = data
        for parent in parents:
            if not isinstance(target.get(parent), dict):
                break
            target = target[parent]
        else:
            if value is DELETE:
                target.pop(key, None)
            else:
                target[key] = value
    return data


# A valid configuration with a few settings changed, removed or added: every setting meets
# every kind of wrong value; and, rarely, any JSON object at all.
paths = st.sampled_from(SETTINGS + [(section,) for section in VALID_CONFIG]) | st.tuples(st.sampled_from(list(VALID_CONFIG)), st.text(max_size=6))
configs = st.lists(st.tuples(paths, json_values | st.just(DELETE)), max_size=3).map(_mutated) | st.dictionaries(
    st.text(max_size=8), json_values, max_size=3
)


@settings(max_examples=300, deadline=None)
@given(data=configs)
def test_index_config_from_dict_rejects_with_config_error_or_round_trips(data: dict) -> None:
    try:
        config = IndexConfig.from_dict(data)
    except ConfigError:
        return
    assert IndexConfig.from_dict(config.to_dict()) == config
