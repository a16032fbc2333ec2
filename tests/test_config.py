from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from searchkit import ChunkingConfig, ConfigError, IndexConfig, ModelIdentity, VectorConfig
from searchkit.config import SCHEMA_VERSION

SHA = "ab" * 32
MODEL = ModelIdentity(name="sentence-transformers/all-MiniLM-L6-v2", weights_sha256=SHA, dimension=384,
                      normalize=True, max_seq_length=256)


def config(**changes: object) -> IndexConfig:
    return IndexConfig(model=MODEL, chunking=ChunkingConfig(max_tokens=200, overlap_tokens=20), **changes)


def test_to_dict_is_plain_nested_data() -> None:
    assert config().to_dict() == {
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "weights_sha256": SHA, "dimension": 384,
                  "normalize": True, "max_seq_length": 256, "precision": "fp32"},
        "chunking": {"max_tokens": 200, "overlap_tokens": 20, "max_chunks": 0},
        "vectors": {"description": "Flat", "metric": "cosine", "ef_search": 128, "nprobe": 32},
        "search": {"mode": "dense", "fusion": "weighted", "hybrid_weight": 0.6, "k1": 0.9, "b": 0.4, "feedback": 0.5},
        "schema_version": SCHEMA_VERSION,
    }


@pytest.mark.parametrize(
    "original",
    [
        IndexConfig(model=MODEL),
        IndexConfig(model=replace(MODEL, normalize=False, max_seq_length=128, dimension=768),
                    chunking=ChunkingConfig(max_tokens=126, overlap_tokens=0)),
        IndexConfig(model=replace(MODEL, max_seq_length=10), chunking=ChunkingConfig(max_tokens=8, overlap_tokens=7)),
    ],
)
def test_round_trip_is_exact_directly_and_through_json(original: IndexConfig) -> None:
    assert IndexConfig.from_dict(original.to_dict()) == original
    through_json = IndexConfig.from_dict(json.loads(json.dumps(original.to_dict())))
    assert through_json == original
    assert through_json.to_dict() == original.to_dict()
    assert json.dumps(through_json.to_dict(), sort_keys=True) == json.dumps(original.to_dict(), sort_keys=True)


def test_defaults_fill_the_model_window() -> None:
    default = IndexConfig(model=MODEL)
    assert default.chunking == ChunkingConfig(254, 32) and default.vectors == VectorConfig("Flat", "cosine")
    assert IndexConfig.from_dict({"model": asdict(MODEL)}) == default


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "message"),
    [
        (64, 64, r"chunking\.overlap_tokens must be between 0 and max_tokens - 1 \(63\), got 64"),
        (64, 100, r"chunking\.overlap_tokens .* got 100"),
        (64, -1, r"chunking\.overlap_tokens .* got -1"),
        (7, 0, r"chunking\.max_tokens must be at least 8, got 7"),
        (0, 0, r"chunking\.max_tokens must be at least 8, got 0"),
    ],
)
def test_bad_chunking_names_the_setting(max_tokens: int, overlap: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap)


def test_max_tokens_above_what_the_model_reads() -> None:
    assert IndexConfig(model=MODEL, chunking=ChunkingConfig(max_tokens=254)).chunking.max_tokens == 254
    with pytest.raises(ConfigError, match=r"chunking\.max_tokens \(255\) exceeds what the model reads \(254 word"):
        IndexConfig(model=MODEL, chunking=ChunkingConfig(max_tokens=255))
    data = config().to_dict()
    data["model"]["max_seq_length"] = 128
    with pytest.raises(ConfigError, match=r"chunking\.max_tokens \(200\) exceeds .* \(126 word pieces"):
        IndexConfig.from_dict(data)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ({"description": "IVF100,ZZ8"}, r"unsupported index type 'IVF100,ZZ8'; use Flat"),
        ({"description": "HNSW"}, r"unsupported index type 'HNSW'"),
        ({"ef_search": 0}, r"vectors\.ef_search and vectors\.nprobe must be positive"),
        ({"metric": "l2"}, r"vectors\.metric 'l2' is not supported; use 'cosine'"),
    ],
)
def test_unsupported_vectors(vectors: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VectorConfig(**vectors)
    data = config().to_dict()
    data["vectors"].update(vectors)
    with pytest.raises(ConfigError, match=message):
        IndexConfig.from_dict(data)


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_schema_version_mismatch(version: object) -> None:
    data = config().to_dict() | {"schema_version": version}
    with pytest.raises(ConfigError, match=f"index schema version {version} is not supported .*supports 1.*rebuild"):
        IndexConfig.from_dict(data)


def test_missing_or_malformed_keys_are_config_errors() -> None:
    data = config().to_dict()
    del data["model"]
    with pytest.raises(ConfigError, match="invalid index configuration: 'model'"):
        IndexConfig.from_dict(data)
    data = config().to_dict()
    del data["model"]["weights_sha256"]
    with pytest.raises(ConfigError, match="invalid index configuration: .*weights_sha256"):
        IndexConfig.from_dict(data)
    data = config().to_dict()
    data["chunking"]["chunk_size"] = 100
    with pytest.raises(ConfigError, match="invalid index configuration: .*chunk_size"):
        IndexConfig.from_dict(data)
    data = config().to_dict() | {"chunkng": {"max_tokens": 100}}
    with pytest.raises(ConfigError, match="invalid index configuration: unknown keys 'chunkng'"):
        IndexConfig.from_dict(data)
    for not_a_dict in ([], "config", None):
        with pytest.raises(ConfigError, match="invalid index configuration: expected an object"):
            IndexConfig.from_dict(not_a_dict)
    data = config().to_dict()
    data["model"] = "all-MiniLM-L6-v2"
    with pytest.raises(ConfigError, match="invalid index configuration"):
        IndexConfig.from_dict(data)
    data = config().to_dict()
    data["chunking"]["max_tokens"] = "200"
    with pytest.raises(ConfigError, match=r"chunking\.max_tokens must be an integer, got '200'"):
        IndexConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, r"model\.name must not be empty"),
        ({"dimension": 0}, r"model\.dimension must be positive, got 0"),
        ({"max_seq_length": 2}, r"model\.max_seq_length must be above 2, got 2"),
    ],
)
def test_bad_model_identity_names_the_setting(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(MODEL, **changes)


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(max_tokens=1)


def test_same_vectors_as_compares_weights_dimension_and_normalisation() -> None:
    assert MODEL.same_vectors_as(MODEL)
    # the name and the reading window do not change the vector space
    assert MODEL.same_vectors_as(replace(MODEL, name="all-MiniLM-L6-v2", max_seq_length=512))
    assert not MODEL.same_vectors_as(replace(MODEL, weights_sha256="0" * 64))
    assert not MODEL.same_vectors_as(replace(MODEL, dimension=768))
    assert not MODEL.same_vectors_as(replace(MODEL, normalize=False))
    # float32 and bfloat16 runs of the same weights share a vector space, and the check says so
    bf16 = replace(MODEL, precision="bf16")
    assert MODEL.same_vectors_as(bf16) and bf16.same_vectors_as(MODEL)
    assert MODEL.precision_note(MODEL) is None
    assert "fp32" in MODEL.precision_note(bf16) and "compatible" in MODEL.precision_note(bf16)
    assert "dim 384" in MODEL.describe() and SHA[:12] in MODEL.describe()


def test_a_manifest_written_before_precisions_existed_opens_as_float32() -> None:
    data = config().to_dict()
    del data["model"]["precision"]
    assert IndexConfig.from_dict(data).model.precision == "fp32"
    bf16 = IndexConfig.from_dict(json.loads(json.dumps(IndexConfig(model=replace(MODEL, precision="bf16")).to_dict())))
    assert bf16.model.precision == "bf16"


@pytest.mark.parametrize("precision", ["auto", "fp16", "int8", ""])
def test_only_a_resolved_precision_is_recorded(precision: str) -> None:
    with pytest.raises(ConfigError, match="model.precision"):
        replace(MODEL, precision=precision)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "dimension", 384.5, r"model\.dimension must be an integer, got 384\.5"),
        ("model", "dimension", "384", r"model\.dimension must be an integer, got '384'"),
        ("model", "normalize", "no", r"model\.normalize must be true or false, got 'no'"),
        ("model", "max_seq_length", True, r"model\.max_seq_length must be an integer, got True"),
        ("model", "name", 7, r"model\.name must be a string, got 7"),
        ("chunking", "max_tokens", 128.0, r"chunking\.max_tokens must be an integer"),
        ("chunking", "overlap_tokens", None, r"chunking\.overlap_tokens must be an integer, got None"),
        ("vectors", "ef_search", "64", r"vectors\.ef_search must be an integer"),
        ("vectors", "description", ["Flat"], r"vectors\.description must be a string"),
        ("search", "hybrid_weight", "0.5", r"search\.hybrid_weight must be a number, got '0\.5'"),
        ("search", "k1", float("nan"), r"search\.k1 must be a number, got nan"),
        ("search", "b", False, r"search\.b must be a number, got False"),
        ("search", "feedback", -1.0, r"search\.feedback must be between 0 and 10, got -1\.0"),
    ],
)
def test_a_mistyped_manifest_value_is_refused_naming_the_setting(section: str, key: str, value: object, message: str) -> None:
    """A hand-edited manifest must not be half-obeyed ("normalize": "no" is truthy)."""
    data = config().to_dict()
    data[section] = dict(data[section], **{key: value})
    with pytest.raises(ConfigError, match=message):
        IndexConfig.from_dict(data)


def test_integral_numbers_stay_valid_for_number_settings() -> None:
    data = config().to_dict()
    data["search"] = dict(data["search"], k1=1, b=0)
    assert IndexConfig.from_dict(data).search.k1 == 1
