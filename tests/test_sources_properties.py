"""Properties of the file readers over generated input: whatever the bytes, they report, never raise."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchkit import Document, Problem, SourceOptions
from searchkit.sources import Sources

# No example database: it would be written into the working tree.
fast = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


def read(path: Path, options: SourceOptions = SourceOptions()) -> tuple[list[Document], list[Problem]]:
    items = list(Sources([path], options))
    assert all(isinstance(item, (Document, Problem)) for item in items)
    docs = [item for item in items if isinstance(item, Document)]
    for doc in docs:
        assert isinstance(doc.id, str) and doc.id
        assert isinstance(doc.text, str)
        assert doc.source and doc.origin.startswith(doc.source)
    return docs, [item for item in items if isinstance(item, Problem)]


# Bytes that are mostly the shapes a reader expects, with every kind of damage mixed in.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
json_records = st.dictionaries(st.sampled_from(["id", "_id", "text", "title", "year", "metadata", "x"]),
                               json_values, max_size=5)
jsonl_lines = st.lists(
    st.one_of(json_records.map(lambda r: json.dumps(r).encode()), json_values.map(lambda v: json.dumps(v).encode()),
              st.binary(max_size=40)),
    max_size=12,
).map(lambda lines: b"\n".join(lines))
csv_cells = st.one_of(st.text(max_size=12), st.sampled_from(["", "1", "-2.5", "true", "2020-01-01", '"', ",", "\n"]))
csv_text = st.lists(st.lists(csv_cells, min_size=1, max_size=5), max_size=10).map(
    lambda rows: "\n".join(",".join(row) for row in rows)
)
csv_bytes = st.one_of(
    csv_text.map(lambda text: ("id,text,year\n" + text).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
)
random_bytes = {
    ".jsonl": st.one_of(st.binary(max_size=300), jsonl_lines),
    ".csv": csv_bytes,
    ".txt": st.binary(max_size=300),
    ".md": st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))),
}


@pytest.mark.parametrize("suffix", sorted(random_bytes))
def test_any_bytes_give_documents_and_problems_never_an_exception(folder: Path, suffix: str) -> None:
    @fast
    @given(random_bytes[suffix])
    def check(data: bytes) -> None:
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        docs, _ = read(path)
        assert Sources([path]).estimate() >= 0
        if suffix in (".txt", ".md"):
            assert len(docs) <= 1

    check()


@fast
@given(csv_bytes, st.dictionaries(st.sampled_from(["year", "id", "text", "other"]), st.sampled_from(
    ["int", "float", "bool", "date", "str"]), max_size=3))
def test_forced_csv_types_never_raise(folder: Path, data: bytes, types: dict[str, str]) -> None:
    path = folder / "forced.csv"
    path.write_bytes(data)
    read(path, SourceOptions(csv_types=types))


def write_csv(path: Path, columns: dict[str, list[str]]) -> None:
    rows = zip(*columns.values())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "text", *columns])
    writer.writerows([f"d{n}", "some text", *row] for n, row in enumerate(rows))
    path.write_text(buffer.getvalue(), encoding="utf-8")


def values(path: Path, column: str) -> list[object]:
    docs, problems = read(path)
    assert problems == []
    return [doc.metadata[column] for doc in docs]


int64 = st.integers(-(2**63), 2**63 - 1)


@fast
@given(st.lists(st.none() | int64, min_size=1, max_size=20))
def test_integers_come_back_as_integers(folder: Path, numbers: list[int | None]) -> None:
    path = folder / "ints.csv"
    write_csv(path, {"n": ["" if n is None else str(n) for n in numbers]})
    back = values(path, "n")
    assert back == numbers and all(type(v) is int for v in back if v is not None)


@fast
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
def test_floats_come_back_as_floats(folder: Path, numbers: list[float]) -> None:
    path = folder / "floats.csv"
    write_csv(path, {"x": [repr(x) for x in numbers]})
    assert values(path, "x") == numbers


@fast
@given(st.lists(st.booleans(), min_size=1, max_size=20), st.lists(st.dates(), min_size=1, max_size=20))
def test_booleans_and_dates_come_back_typed(folder: Path, flags: list[bool], days: list[date]) -> None:
    size = min(len(flags), len(days))
    path = folder / "bools-dates.csv"
    write_csv(path, {"flag": [str(f) for f in flags[:size]], "day": [d.isoformat() for d in days[:size]]})
    assert values(path, "flag") == flags[:size]
    assert values(path, "day") == [d.isoformat() for d in days[:size]]


words = st.text(st.characters(categories=["L"]), min_size=1, max_size=10).filter(
    lambda w: w.lower() not in ("true", "false")
)


@fast
@given(st.lists(int64.map(str) | words, min_size=1, max_size=20).filter(
    lambda cells: any(not cell.lstrip("-").isdigit() for cell in cells)
))
def test_a_column_with_any_text_stays_text_exactly(folder: Path, cells: list[str]) -> None:
    path = folder / "mixed.csv"
    write_csv(path, {"mixed": cells})
    assert values(path, "mixed") == cells
