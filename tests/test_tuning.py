"""searchkit tune: the split, the significance test, the grid, and that a tuned setting is what later searches use."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO_ROOT
from searchkit import Index, SearchConfig, load_beir
from searchkit.cli import app
from searchkit.evaluation import CHUNKS_PER_DOCUMENT
from searchkit.sources import read_sources
from searchkit.tuning import _departures, _Rankings, paired_randomization_test, search_grid, split_queries, tune

DEMO = REPO_ROOT / "corpora" / "demo"


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory, embedder):
    index = Index.create(tmp_path_factory.mktemp("tune") / "demo", model=embedder)
    index.add(read_sources([load_beir(DEMO).corpus_path]))
    yield index
    index.close()


def test_split_is_stable_disjoint_and_complete() -> None:
    ids = [f"q{i}" for i in range(41)]
    tune_half, held_out = split_queries(ids, seed=3)
    assert (tune_half, held_out) == split_queries(list(reversed(ids)), seed=3)  # file order does not matter
    assert not set(tune_half) & set(held_out) and sorted(tune_half + held_out) == sorted(ids)
    assert (len(tune_half), len(held_out)) == (21, 20)
    assert split_queries(ids, seed=4) != (tune_half, held_out)


def test_paired_randomization_test() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(size=60)
    assert paired_randomization_test(a, a) == 1.0
    assert paired_randomization_test(a, a + 0.2) < 0.001  # every query better
    noise = a + rng.normal(0, 0.2, size=60)
    assert paired_randomization_test(a, noise - noise.mean() + a.mean()) > 0.5  # no shift on average


def test_departures_count_only_the_settings_a_mode_uses() -> None:
    assert _departures(SearchConfig()) == 0
    assert _departures(SearchConfig(mode="dense", k1=2.0, hybrid_weight=0.2)) == 0  # dense ignores BM25 and fusion
    assert _departures(SearchConfig(mode="hybrid")) == 1
    assert _departures(SearchConfig(mode="hybrid", fusion="rrf", hybrid_weight=0.2)) == 2  # rrf has no weight
    assert _departures(SearchConfig(mode="hybrid", feedback=0.0)) == 2
    assert _departures(SearchConfig(mode="lexical", k1=1.2, b=0.75)) == 3


def test_grid_covers_every_mode_and_the_defaults() -> None:
    grid = search_grid()
    assert {s.mode for s in grid} == {"dense", "lexical", "hybrid"}
    assert {s.fusion for s in grid if s.mode == "hybrid"} == {"weighted", "rrf"}
    assert SearchConfig(mode="hybrid", k1=0.9, b=0.4) in grid and SearchConfig(mode="lexical") in grid
    assert {s.feedback for s in grid if s.mode == "hybrid" and s.fusion == "weighted"} == {0.0, 0.5, 1.0}
    assert len(grid) == len(set(grid))


@pytest.mark.parametrize(
    "settings",
    [SearchConfig(), SearchConfig(mode="lexical", k1=1.5, b=0.75),
     SearchConfig(mode="hybrid"), SearchConfig(mode="hybrid", fusion="rrf"),
     SearchConfig(mode="hybrid", hybrid_weight=0.3, k1=1.2, b=0.6), SearchConfig(mode="hybrid", feedback=0.0)],
)
def test_tuning_ranks_exactly_as_search_does(demo_index: Index, settings: SearchConfig) -> None:
    """The grid is ranked from rankings read once; each setting must give what a search with it gives."""
    dataset = load_beir(DEMO)
    queries = dict(list(dataset.queries.items())[:12])
    emulated = _Rankings(demo_index, queries, progress=False).run(settings)
    original = demo_index.config.search
    demo_index._state.config = demo_index.config.__class__(**{**demo_index.config.__dict__, "search": settings})
    try:
        hits = demo_index.search_batch(list(queries.values()), 10 * CHUNKS_PER_DOCUMENT)
    finally:
        demo_index._state.config = demo_index.config.__class__(**{**demo_index.config.__dict__, "search": original})
    for query_id, query_hits in zip(queries, hits):
        documents = list(dict.fromkeys(hit.doc_id for hit in query_hits))[:10]
        assert list(emulated[query_id]) == documents, query_id


def test_hybrid_top_hits_do_not_depend_on_how_many_are_asked_for(demo_index: Index) -> None:
    """Evaluation asks for 300 chunks, a search for 10: the first 10 must be the same."""
    queries = list(load_beir(DEMO).queries.values())[:12]
    assert demo_index.store.counts()[1] > 100  # so that 300 candidates reach deeper than the 100 of a search for 10
    for feedback in (0.0, 0.5):
        few = demo_index.search_batch(queries, 10, mode="hybrid", feedback=feedback)
        many = demo_index.search_batch(queries, 300, mode="hybrid", feedback=feedback)
        for want, got in zip(few, many):
            assert [h.chunk_id for h in got[:10]] == [h.chunk_id for h in want]


def test_tune_reports_a_held_out_comparison_and_applies_only_a_significant_winner(demo_index: Index) -> None:
    dataset = load_beir(DEMO)
    small_grid = [SearchConfig(mode="lexical"), SearchConfig(mode="hybrid"), SearchConfig(mode="hybrid", fusion="rrf")]
    result = tune(demo_index, dataset, grid=small_grid, apply=False)
    assert result.tune_queries + result.held_out_queries == len(dataset.queries)
    assert result.current.settings == SearchConfig() and len(result.trials) == 4  # the grid and the current settings
    assert result.winner in result.trials and result.trials[0].tune == max(t.tune for t in result.trials)
    assert _departures(result.winner.settings) <= _departures(result.trials[0].settings)
    assert result.gain == pytest.approx(result.winner.held_out - result.current.held_out)
    assert 0 < result.p_value <= 1 and not result.applied
    assert demo_index.config.search == SearchConfig()
    json.dumps(result.to_dict())
    only_current = tune(demo_index, dataset, grid=[SearchConfig()])
    assert not only_current.better and not only_current.applied and only_current.gain == 0


def test_tuned_settings_are_kept_in_the_manifest_and_used_by_later_searches(make_index, embedder) -> None:
    from conftest import SMALL_CORPUS

    index = make_index(SMALL_CORPUS)
    tuned = SearchConfig(mode="lexical", k1=1.2, b=0.75)
    index.configure_search(tuned)
    path = index.path
    index.close()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["config"]["search"] == {
        "mode": "lexical", "fusion": "weighted", "hybrid_weight": 0.6, "k1": 1.2, "b": 0.75, "feedback": 0.5
    }
    with Index.open(path, model=embedder) as reopened:
        assert reopened.config.search == tuned
        plain = reopened.search("sourdough starter", k=3)
        assert plain == reopened.search("sourdough starter", k=3, mode="lexical")
        assert plain[0].doc_id == "bread"
        assert reopened.search("sourdough starter", k=3, mode="dense")[0].doc_id == "bread"  # an explicit mode wins


def test_tune_command_dry_run_leaves_the_settings(demo_index: Index) -> None:
    before = json.loads((demo_index.path / "manifest.json").read_text())["config"]
    result = CliRunner().invoke(app, ["tune", str(DEMO), "--index", str(demo_index.path), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["trials"] and report["winner"]["label"] and report["applied"] is False
    assert json.loads((demo_index.path / "manifest.json").read_text())["config"] == before
