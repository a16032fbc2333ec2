"""BEIR loading: good data loads, bad lines are reported where they are and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchkit.datasets import BeirDataset, DatasetError, DatasetProblem, load_beir

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"

CORPUS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr."},
    {"_id": "d2", "title": "Dogs", "text": "Dogs bark.", "year": 2001},
    {"id": "d3", "text": "Birds sing."},
]
QUERIES = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "unjudged"}]
QRELS = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2", "q2\td3\t0"]


def _jsonl(records: list[dict | str]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _write(
    root: Path,
    corpus: list[dict | str] = CORPUS,
    queries: list[dict | str] = QUERIES,
    qrels: list[str] = QRELS,
) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(_jsonl(corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text(_jsonl(queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return root


def _only_problem(dataset: BeirDataset) -> DatasetProblem:
    assert len(dataset.problems) == 1, [str(p) for p in dataset.problems]
    return dataset.problems[0]


def test_clean_dataset_loads(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path))
    assert dataset.problems == []
    assert dataset.queries == {"q1": "what purrs", "q2": "what barks"}  # only the split's queries
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert dataset.corpus_path == tmp_path / "corpus.jsonl"
    assert dataset.root == tmp_path


def test_header_is_optional(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, qrels=QRELS[1:]), split="test")
    assert dataset.problems == []
    assert sum(len(docs) for docs in dataset.qrels.values()) == 3


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_beir(tmp_path / "absent")


def test_missing_qrels_names_the_file_and_layout(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(DatasetError) as raised:
        load_beir(tmp_path, split="dev")
    message = str(raised.value)
    assert str(tmp_path / "qrels" / "dev.tsv") in message
    assert "corpus.jsonl, queries.jsonl and qrels/<split>.tsv" in message
    assert "test" in message  # the splits that do exist
    assert isinstance(raised.value, ValueError)


def test_missing_queries_raises(tmp_path: Path) -> None:
    (_write(tmp_path) / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match="queries.jsonl"):
        load_beir(tmp_path)


def test_malformed_json_line_in_queries(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, queries=[QUERIES[0], '{"_id": "q2", "text": ', QUERIES[2]]))
    problem = dataset.problems[0]
    assert problem.path == tmp_path / "queries.jsonl"
    assert problem.line == 2
    assert "invalid JSON" in problem.reason
    # The lost query's judgements are reported too, so the missing pairs are accounted for.
    assert [(p.path.name, p.line) for p in dataset.problems[1:]] == [("test.tsv", 3), ("test.tsv", 4)]
    assert dataset.queries == {"q1": "what purrs"}
    assert dataset.qrels == {"q1": {"d1": 1}}


def test_query_without_text(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, queries=[QUERIES[0], {"_id": "q2"}]))
    problem = dataset.problems[0]
    assert (problem.path.name, problem.line) == ("queries.jsonl", 2)
    assert '"text"' in problem.reason
    assert "q1" in dataset.queries


def test_duplicate_query_id_keeps_first(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, queries=[*QUERIES, {"_id": "q1", "text": "again"}]))
    problem = _only_problem(dataset)
    assert (problem.line, "duplicate" in problem.reason) == (4, True)
    assert dataset.queries["q1"] == "what purrs"


def test_corpus_problems_are_reported(tmp_path: Path) -> None:
    corpus = [*CORPUS, "not json", {"title": "no id", "text": "x"}, {"_id": "d1", "text": "dup"}]
    dataset = load_beir(_write(tmp_path, corpus=corpus))
    assert [(p.path.name, p.line) for p in dataset.problems] == [("corpus.jsonl", n) for n in (4, 5, 6)]
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}


def test_bad_qrels_rows(tmp_path: Path) -> None:
    qrels = [*QRELS, "q1 d2 1", "q1\td2\tyes", "q1\td2\t1.5", "q1\td3\t1"]
    dataset = load_beir(_write(tmp_path, qrels=qrels))
    assert [(p.path, p.line) for p in dataset.problems] == [(tmp_path / "qrels" / "test.tsv", n) for n in (5, 6, 7)]
    assert "3 tab-separated fields" in dataset.problems[0].reason
    assert "not an integer" in dataset.problems[1].reason
    assert dataset.qrels["q1"] == {"d1": 1, "d3": 1}


def test_unknown_query_in_qrels(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, qrels=[*QRELS, "q9\td1\t1"]))
    problem = _only_problem(dataset)
    assert (problem.path.name, problem.line) == ("test.tsv", 5)
    assert "q9" in problem.reason
    assert "q9" not in dataset.qrels


def test_unknown_document_in_qrels(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, qrels=[*QRELS, "q1\td404\t1"]))
    problem = _only_problem(dataset)
    assert (problem.path.name, problem.line) == ("test.tsv", 5)
    assert "d404" in problem.reason
    assert dataset.qrels["q1"] == {"d1": 1}


def test_check_corpus_off_keeps_unknown_documents(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, qrels=[*QRELS, "q1\td404\t1"]), check_corpus=False)
    assert dataset.problems == []
    assert dataset.qrels["q1"] == {"d1": 1, "d404": 1}


def test_duplicate_judgement_keeps_first(tmp_path: Path) -> None:
    dataset = load_beir(_write(tmp_path, qrels=[*QRELS, "q1\td1\t3"]))
    assert _only_problem(dataset).line == 5
    assert dataset.qrels["q1"] == {"d1": 1}


def test_undecodable_line_is_a_problem(tmp_path: Path) -> None:
    _write(tmp_path)
    with (tmp_path / "queries.jsonl").open("ab") as handle:
        handle.write(b'{"_id": "q4", "text": "caf\xe9"}\n')
    problem = _only_problem(load_beir(tmp_path))
    assert (problem.path.name, problem.line) == ("queries.jsonl", 4)
    assert "UTF-8" in problem.reason


def test_blank_lines_and_utf8_text(tmp_path: Path) -> None:
    queries = [{"_id": "q1", "text": "café ☕"}, "", QUERIES[1]]
    dataset = load_beir(_write(tmp_path, queries=queries))
    assert dataset.problems == []
    assert dataset.queries["q1"] == "café ☕"


def test_problem_string_points_at_the_line() -> None:
    assert str(DatasetProblem(Path("x/qrels/test.tsv"), 3, "bad row")) == "x/qrels/test.tsv:3: bad row"
    assert str(DatasetProblem(Path("x"), None, "bad")) == "x: bad"


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} not present")
def test_scifact_loads_cleanly() -> None:
    dataset = load_beir(SCIFACT)
    assert dataset.problems == []
    assert len(dataset.queries) == 300
    assert sum(len(docs) for docs in dataset.qrels.values()) == 339
