"""The embedder's identity: read from the model's files, fingerprinted by its weights, cached, no model load."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from searchkit.embedding import MODEL_CACHE_FILE, SentenceTransformerEmbedder, _ModelCache, resolve_model, weights_sha256
from searchkit.errors import ConfigError

BUNDLED = Path(resolve_model("all-MiniLM-L6-v2"))
BUNDLED_SHA256_PREFIX = "53aa5117"  # model.safetensors of sentence-transformers/all-MiniLM-L6-v2


# Embedders here ask for fp32: with "auto", the identity's precision is measured (once per machine), which loads the model.
@pytest.fixture
def cache(tmp_path: Path) -> _ModelCache:
    return _ModelCache(tmp_path / "cache" / MODEL_CACHE_FILE)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The bundled model's small files copied, its weights linked (a copy with its own configs)."""
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "model.safetensors").symlink_to(BUNDLED / "model.safetensors")
    return folder


def test_identity_comes_from_the_files_without_loading_the_model(cache: _ModelCache, embedder) -> None:
    lazy = SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache=cache, precision="fp32")
    identity = lazy.identity
    assert not lazy.loaded
    assert identity.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert identity.weights_sha256.startswith(BUNDLED_SHA256_PREFIX)
    # What the files say is what sentence-transformers builds.
    assert identity.dimension == embedder.model.get_embedding_dimension() == 384
    assert identity.max_seq_length == embedder.model.max_seq_length == 256
    assert identity == replace(embedder.identity, precision="fp32")


def test_the_model_loads_on_first_encode(cache: _ModelCache) -> None:
    lazy = SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache=cache, precision="fp32")
    assert not lazy.loaded
    assert lazy.encode(["a cup of tea"]).shape == (1, 384)
    assert lazy.loaded


def test_the_fingerprint_is_cached_by_file_stamps(cache: _ModelCache, monkeypatch: pytest.MonkeyPatch) -> None:
    first = SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache=cache, precision="fp32").identity
    entry = json.loads(cache.path.read_text())["models"][str(BUNDLED.resolve())]
    weights = str((BUNDLED / "model.safetensors").resolve())
    assert [weights, (BUNDLED / "model.safetensors").stat().st_size] in [stamp[:2] for stamp in entry["stamps"]]

    def no_hashing(*args: object) -> str:
        raise AssertionError("the weights were hashed again")

    monkeypatch.setattr("searchkit.embedding._hash_files", no_hashing)
    assert SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache=cache, precision="fp32").identity == first


def test_a_changed_weight_file_is_hashed_again(cache: _ModelCache, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED, folder)
    before = SentenceTransformerEmbedder(str(folder), cache=cache, precision="fp32").identity
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even on a coarse clock
    after = SentenceTransformerEmbedder(str(folder), cache=cache, precision="fp32").identity
    assert after.weights_sha256 != before.weights_sha256 == weights_sha256(BUNDLED)
    assert after.weights_sha256 == weights_sha256(folder)


def test_a_corrupt_cache_is_ignored_and_rewritten(cache: _ModelCache) -> None:
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text("{not json")
    identity = SentenceTransformerEmbedder("all-MiniLM-L6-v2", cache=cache, precision="fp32").identity
    assert identity.weights_sha256.startswith(BUNDLED_SHA256_PREFIX)
    assert json.loads(cache.path.read_text())["version"] == 1
    assert not list(cache.path.parent.glob(".models-*"))  # no temporary file left behind


def test_the_cache_lives_in_the_searchkit_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    SentenceTransformerEmbedder("all-MiniLM-L6-v2").identity
    assert (tmp_path / "elsewhere" / MODEL_CACHE_FILE).is_file()


def test_a_model_without_weight_files_says_so(cache: _ModelCache, model_copy: Path) -> None:
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no weight files"):
        SentenceTransformerEmbedder(str(model_copy), cache=cache, precision="fp32").identity


def test_an_identity_the_files_do_not_give_comes_from_the_loaded_model(cache: _ModelCache, model_copy: Path) -> None:
    # Without max_seq_length, sentence-transformers takes it from the tokenizer and model configs.
    (model_copy / "sentence_bert_config.json").write_text(json.dumps({"do_lower_case": False}))
    lazy = SentenceTransformerEmbedder(str(model_copy), cache=cache, precision="fp32")
    identity = lazy.identity
    assert lazy.loaded
    assert identity.max_seq_length == lazy.model.max_seq_length
    assert identity.dimension == 384 and identity.weights_sha256.startswith(BUNDLED_SHA256_PREFIX)
    assert SentenceTransformerEmbedder(str(model_copy), cache=cache, precision="fp32").identity == identity  # cached too


def test_an_unknown_model_is_a_clear_error(cache: _ModelCache, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load embedding model"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model"), cache=cache, precision="fp32").identity
