"""Ingestion: pruning, stable file identity, typed-field warnings, chunking from the model, streaming input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from searchkit import ConfigError, Document, Index, SearchkitError
from searchkit.datasets import load_beir
from searchkit.evaluation import EvalSetting, evaluate_settings
from searchkit.sources import SourceOptions, Sources

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "corpora" / "demo"


def write_notes(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tea.md").write_text("# Tea\nGreen tea is brewed from unoxidised leaves.\n")
    (folder / "tides.md").write_text("# Tides\nThe Moon's gravity raises the ocean tides twice a day.\n")
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "records.jsonl").write_text(
        json.dumps({"id": "r1", "text": "Volcanoes erupt molten rock."}) + "\n"
        + json.dumps({"id": "r2", "text": "Glaciers carve valleys over millennia."}) + "\n"
    )


def sources(*paths: Path, root: Path) -> Sources:
    return Sources(list(paths), SourceOptions(id_root=root))


def test_prune_removes_documents_whose_file_or_record_is_gone(make_index, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    write_notes(notes)
    index = make_index()
    first = index.add(sources(notes, root=tmp_path), prune=True)
    assert first.added == 4 and first.pruned == 0 and first.skipped_files == {".png": 1}
    (notes / "tides.md").unlink()
    (notes / "records.jsonl").write_text(json.dumps({"id": "r1", "text": "Volcanoes erupt molten rock."}) + "\n")
    again = index.add(sources(notes, root=tmp_path), prune=True)
    assert again.pruned == 2 and again.unchanged == 2
    assert {h.doc_id for h in index.search("ocean tides and glaciers", k=10)} == {"notes/tea.md", "r1"}

    without = index.add(sources(notes / "tea.md", root=tmp_path))  # no --prune: nothing is removed
    assert without.pruned == 0 and len(index) == 2


def test_prune_keeps_documents_of_a_file_that_reported_a_problem(make_index, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    write_notes(notes)
    index = make_index()
    index.add(sources(notes, root=tmp_path))
    (notes / "records.jsonl").write_text(json.dumps({"id": "r1", "text": "Volcanoes erupt."}) + "\n{broken\n")
    report = index.add(sources(notes, root=tmp_path), prune=True)
    assert report.pruned == 0 and [p.line for p in report.failed] == [2]
    assert len(index) == 4, "r2's line is unreadable now: a problem to fix, not a deletion"


def test_prune_is_limited_to_the_paths_given(make_index, tmp_path: Path) -> None:
    write_notes(tmp_path / "a")
    write_notes(tmp_path / "b")
    index = make_index()
    index.add(sources(tmp_path / "a", tmp_path / "b", root=tmp_path))
    (tmp_path / "b" / "tea.md").unlink()
    report = index.add(sources(tmp_path / "a", root=tmp_path), prune=True)
    assert report.pruned == 0
    assert "b/tea.md" in index.store.document_states(["b/tea.md"]), "b was not named: its documents are kept"


def test_the_same_file_spelled_three_ways_is_one_document(make_index, tmp_path: Path, monkeypatch) -> None:
    write_notes(tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    index = make_index()
    spellings = ["docs/tea.md", "./docs/tea.md", str(tmp_path / "docs" / "tea.md")]
    reports = [index.add(Sources([spelling])) for spelling in spellings]
    assert [(r.added, r.unchanged) for r in reports] == [(1, 0), (0, 1), (0, 1)]
    assert len(index) == 1 and index.search("tea", k=1)[0].doc_id == "docs/tea.md"


def test_a_field_that_starts_holding_a_second_type_is_reported(make_index) -> None:
    index = make_index([Document("old", "An old record.", metadata={"year": 2019})])
    report = index.add([
        Document("new", "A new record.", metadata={"year": "2021"}, origin="data.csv:3"),
        Document("newer", "A newer record.", metadata={"year": "2022"}, origin="data.csv:4"),
    ])
    assert report.added == 2 and len(report.warnings) == 1, "reported once per field"
    assert "'year'" in report.warnings[0] and "data.csv:3" in report.warnings[0] and "number" in report.warnings[0]
    assert index.add([Document("same", "Same kind.", metadata={"year": 2020})]).warnings == []


def test_ingest_reads_a_stream_without_holding_it(make_index) -> None:
    consumed: list[int] = []

    def stream() -> Iterator[Document]:
        for number in range(30):
            consumed.append(number)
            yield Document(f"s{number}", f"Streamed document number {number} about topic {number % 3}.")

    index = make_index()
    report = index.add(stream(), batch_chars=200)
    assert report.added == 30 and consumed == list(range(30)) and len(index) == 30


class ShortWindowModel:
    """The real model behind an identity that reads only 128 word pieces."""

    def __init__(self, real) -> None:
        self._real = real
        self.identity = replace(real.identity, max_seq_length=128)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_chunk_size_comes_from_the_model(tmp_path: Path, embedder) -> None:
    with Index.create(tmp_path / "short", model=ShortWindowModel(embedder)) as short:
        assert short.config.chunking.max_tokens == 126
    with Index.create(tmp_path / "default", model=embedder) as default:
        assert default.config.chunking.max_tokens == 254
    with Index.create(tmp_path / "set", model=embedder, chunking={"max_tokens": 100}) as chosen:
        assert (chosen.config.chunking.max_tokens, chosen.config.chunking.overlap_tokens) == (100, 12)


def test_chunking_given_for_an_existing_index_must_match(tmp_path: Path, embedder) -> None:
    Index.create(tmp_path / "idx", model=embedder, chunking={"max_tokens": 100}).close()
    with pytest.raises(ConfigError, match=r"built with max_tokens=100, not max_tokens=200; chunking is fixed"):
        Index.open_or_create(tmp_path / "idx", model=embedder, chunking={"max_tokens": 200})
    with Index.open_or_create(tmp_path / "idx", model=embedder, chunking={"max_tokens": 100}) as same:
        assert same.config.chunking.max_tokens == 100


def test_an_index_is_never_created_among_other_files(tmp_path: Path, embedder) -> None:
    write_notes(tmp_path / "notes")
    with pytest.raises(SearchkitError, match=r"already holds other files .*give a new or empty folder"):
        Index.create(tmp_path / "notes", model=embedder)
    assert not (tmp_path / "notes" / "manifest.json").exists()


def test_eval_completes_an_interrupted_build_before_scoring(tmp_path: Path, embedder) -> None:
    dataset = load_beir(DEMO)
    partial = [line for line in (DEMO / "corpus.jsonl").read_text().splitlines()[:40]]
    (tmp_path / "part.jsonl").write_text("\n".join(partial) + "\n")
    with Index.create(tmp_path / "idx", model=embedder) as index:
        index.add(Sources([tmp_path / "part.jsonl"]))  # a build that stopped after 40 documents
    [result] = evaluate_settings(dataset, [EvalSetting("demo", tmp_path / "idx")], [10], cache=False)
    assert result.ingest is not None and result.ingest.added == 120
    assert result.ingest.chunks_added < 160, "the 40 documents already there were not embedded again"
    with Index.open(tmp_path / "idx", model=embedder) as index:
        assert len(index) == 160
