from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT, SMALL_CORPUS
from searchkit import ChunkingConfig, ConfigError, Document, load_beir
from searchkit.cache import CachedEmbedder
from searchkit.cli import app
from searchkit.evaluation import EvalSetting, evaluate_settings, format_table, parse_variant, retrieve_run, write_report
from searchkit.retrieval import Mode

DEMO = REPO_ROOT / "corpora" / "demo"


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory: pytest.TempPathFactory):
    """The demo corpus evaluated at two chunk sizes, sharing one embedding cache."""
    folder = tmp_path_factory.mktemp("eval")
    dataset = load_beir(DEMO)
    base = EvalSetting("default", folder / "idx")
    settings = [base, base.with_changes({"chunk_tokens": "96", "overlap": "16"})]
    return dataset, evaluate_settings(dataset, settings, [1, 3, 10, 100])


def test_demo_corpus_is_clean() -> None:
    dataset = load_beir(DEMO)
    assert dataset.problems == []
    assert len(dataset.queries) >= 30
    assert sum(len(docs) for docs in dataset.qrels.values()) >= 60
    assert {grade for docs in dataset.qrels.values() for grade in docs.values()} == {1, 2}


def test_dense_retrieval_on_the_demo_corpus_scores_in_a_sane_range(demo_results) -> None:
    dataset, (default, small_chunks) = demo_results
    mean = default.evaluation.mean
    assert default.evaluation.queries == len(dataset.queries)
    assert 0.75 <= mean["ndcg@10"] <= 1.0
    assert mean["recall@100"] >= 0.95
    assert 0.8 <= mean["mrr@10"] <= 1.0
    assert mean["precision@1"] >= 0.75
    assert default.ingest is not None and default.ingest.added == 160 and not default.ingest.failed
    assert small_chunks.ingest.chunks_added > default.ingest.chunks_added
    assert small_chunks.settings["config"]["chunking"] == {"max_tokens": 96, "overlap_tokens": 16, "max_chunks": 0}
    assert 0.6 <= small_chunks.evaluation.mean["ndcg@10"] <= 1.0


def test_document_score_is_its_best_chunk(demo_results) -> None:
    _, (default, _) = demo_results
    for query_id, docs in default.run.items():
        assert len(docs) == len(set(docs)) <= 100
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True), query_id


def test_second_setting_reuses_cached_embeddings(tmp_path: Path, embedder) -> None:
    documents = [Document(f"d{i}", f"Document {i} is about subject {i} and nothing else.") for i in range(20)]
    cached = CachedEmbedder(embedder, cache_dir=tmp_path / "cache")
    from searchkit import Index

    first = Index.create(tmp_path / "a", model=cached)
    first.add(documents)
    assert (cached.misses, cached.hits) == (20, 0)
    embedded_before = embedder.texts_encoded
    second = Index.create(tmp_path / "b", model=CachedEmbedder(embedder, cache_dir=tmp_path / "cache"))
    second.add(documents)
    assert second.embedder.misses == 0 and second.embedder.hits == 20
    assert embedder.texts_encoded == embedded_before, "the second index must embed nothing"
    query = "subject 7"
    assert [h.doc_id for h in first.search(query, k=3)] == [h.doc_id for h in second.search(query, k=3)]


def test_report_writes_runs_per_query_scores_and_a_plot(demo_results, tmp_path: Path) -> None:
    dataset, results = demo_results
    written = write_report(tmp_path / "report", results, dataset.qrels)
    names = sorted(p.name for p in written)
    assert "retrieval_quality.png" in names and "summary.json" in names
    png = tmp_path / "report" / "retrieval_quality.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    run_lines = (tmp_path / "report" / "default.run.trec").read_text().splitlines()
    query_id, q0, doc_id, rank, score, tag = run_lines[0].split()
    assert q0 == "Q0" and rank == "1" and tag == "default" and doc_id in results[0].run[query_id]
    per_query = (tmp_path / "report" / "default.per_query.tsv").read_text().splitlines()
    assert per_query[0].startswith("query_id\t") and len(per_query) == 1 + len(dataset.queries)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["default"]["ndcg@10"] == pytest.approx(results[0].evaluation.mean["ndcg@10"])


def test_table_shows_settings_side_by_side_with_differences(demo_results) -> None:
    _, results = demo_results
    table = format_table(results, [10])
    header, rule, *rows = table.splitlines()
    assert "default" in header and "chunk_tokens=96,overlap=16" in header and "Δ chunk_tokens=96,overlap=16" in header
    ndcg = next(r for r in rows if r.startswith("ndcg@10")).split()
    assert float(ndcg[3]) == pytest.approx(float(ndcg[2]) - float(ndcg[1]), abs=1e-4)


def test_variant_parsing_errors() -> None:
    assert parse_variant("model=all-MiniLM-L6-v2, chunk_tokens=128") == {"model": "all-MiniLM-L6-v2", "chunk_tokens": "128"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_variant("chunk_tokens")
    base = EvalSetting("base", Path("/tmp/x"))
    with pytest.raises(ConfigError, match="unknown setting colour"):
        base.with_changes({"colour": "red"})
    with pytest.raises(ConfigError, match="integers"):
        base.with_changes({"chunk_tokens": "big"})
    assert base.with_changes({"chunk_tokens": "100"}).chunking == ChunkingConfig(100, 32)


def test_retrieve_run_fills_depth_with_distinct_documents(small_index) -> None:
    run = retrieve_run(small_index, {"q": "a pet animal"}, depth=5)
    assert len(run["q"]) == 5


def test_cli_eval_json_and_bad_dataset(demo_results, tmp_path: Path) -> None:
    runner = CliRunner()
    index = Path(demo_results[1][0].settings["index"])
    result = runner.invoke(app, ["eval", str(DEMO), "--index", str(index), "--k", "10,100", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["queries"] == 40 and {"ndcg@10", "recall@100", "mrr@10", "map@10", "precision@10"} <= set(data)
    assert data["ndcg@10"] == pytest.approx(demo_results[1][0].evaluation.mean["ndcg@10"], abs=1e-9)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "corpus.jsonl").write_text('{"_id": "d1", "text": "hello"}\n')
    result = runner.invoke(app, ["eval", str(broken), "--index", str(tmp_path / "i")])
    assert result.exit_code == 2 and "queries.jsonl" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["eval", str(DEMO), "--index", str(index), "--k", "ten"])
    assert result.exit_code == 2 and "--k takes comma-separated positive integers" in result.output


def test_eval_scores_the_ranking_the_index_is_set_to_use(make_index) -> None:
    """After `searchkit tune` writes hybrid into the manifest, eval must score hybrid, as search returns it."""
    from searchkit.config import SearchConfig

    index = make_index(SMALL_CORPUS)
    queries = {"q1": "a pet that purrs", "q2": "hot coffee under pressure", "q3": "molten rock"}
    dense = retrieve_run(index, queries, depth=5)
    index.configure_search(SearchConfig(mode="lexical"))
    followed = retrieve_run(index, queries, depth=5)
    assert followed == retrieve_run(index, queries, depth=5, mode=Mode.LEXICAL)
    assert followed != dense
