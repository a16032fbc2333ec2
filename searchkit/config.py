"""The index configuration as plain data.

An index directory is fully described by its manifest, so the configuration is a tree of
frozen dataclasses that round-trip exactly through ``to_dict``/``from_dict`` (and so
through JSON). Validation happens here, at the boundary, so a bad setting fails before
any work is done, with a message that names the setting.
"""

from __future__ import annotations

import re
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from searchkit.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "DEFAULT_MODEL",
    "PRECISIONS",
    "ModelIdentity",
    "ChunkingConfig",
    "VectorConfig",
    "SearchConfig",
    "IndexConfig",
    "check_description",
]

SCHEMA_VERSION = 1
DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Arithmetic an index's passages can be embedded in; "auto" (resolved before anything is recorded) is not one.
PRECISIONS = ("fp32", "bf16")
DESCRIPTION_PATTERN = re.compile(r"^(Flat|HNSW(\d+)|IVF(\d*),(Flat|SQ8|PQ(\d+)))$")

_KINDS = {"str": ((str,), "a string"), "int": ((int,), "an integer"), "float": ((int, float), "a number"),
          "bool": ((bool,), "true or false")}


def _check_types(config: object, section: str) -> None:
    """Every field holds a value of its declared kind: a hand-edited manifest with
    ``"dimension": 384.5`` or ``"normalize": "no"`` must be refused, not half-obeyed
    (a non-empty string is truthy, so "no" would have meant yes)."""
    for item in fields(config):  # type: ignore[arg-type]
        if item.type not in _KINDS:
            continue
        allowed, kind = _KINDS[item.type]
        value = getattr(config, item.name)
        wrong_bool = isinstance(value, bool) and item.type != "bool"
        if not isinstance(value, allowed) or wrong_bool or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{section}.{item.name} must be {kind}, got {value!r}")


def check_description(description: str) -> str:
    """Validate an index description; ``auto`` is accepted and resolved at build time."""
    if description == "auto" or DESCRIPTION_PATTERN.match(description):
        return description
    raise ConfigError(
        f"unsupported index type {description!r}; use Flat (exact), HNSW<M> (e.g. HNSW32), "
        "IVF[<lists>],Flat, IVF[<lists>],SQ8, IVF[<lists>],PQ<m> (e.g. IVF,PQ48), or auto"
    )


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two embedders interchangeable: same weights, same vector space.

    ``weights_sha256`` is what catches a different model behind the same name; the
    dimension alone would let a same-sized model through with meaningless scores.
    ``precision`` is the arithmetic the passages were embedded in (``fp32``, or ``bf16``
    where the CPU runs it fast); manifests written before it existed were float32.
    """

    name: str
    weights_sha256: str
    dimension: int
    normalize: bool = True
    max_seq_length: int = 256
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_types(self, "model")
        if not self.name:
            raise ConfigError("model.name must not be empty")
        if self.dimension <= 0:
            raise ConfigError(f"model.dimension must be positive, got {self.dimension}")
        if self.max_seq_length <= 2:
            raise ConfigError(f"model.max_seq_length must be above 2, got {self.max_seq_length}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"model.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def same_vectors_as(self, other: ModelIdentity) -> bool:
        """True when vectors from ``other`` are comparable with ours.

        Same weights, dimension and normalisation. The precision is deliberately not
        compared: float32 and bfloat16 runs of the same weights give vectors that agree to
        cosine 0.9999 and rank alike (``tests/test_precision.py``), so an index built in
        one is searched in the other; :meth:`precision_note` says when that happens.
        """
        return (
            self.weights_sha256 == other.weights_sha256
            and self.dimension == other.dimension
            and self.normalize == other.normalize
        )

    def precision_note(self, other: ModelIdentity) -> str | None:
        """How the precisions of two interchangeable identities differ, or None when they do not."""
        if self.precision == other.precision:
            return None
        return (
            f"vectors embedded in {self.precision} and in {other.precision} by the same weights "
            f"({self.weights_sha256[:12]}) are compatible"
        )

    def describe(self) -> str:
        return f"{self.name} (dim {self.dimension}, weights {self.weights_sha256[:12]}, {self.precision})"


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut into passages the model can read whole.

    Sizes are in the embedding model's word pieces. The default fills the model's
    256-piece window (less the two special tokens), so a short document stays a single
    chunk and is embedded exactly as the model's published benchmarks embed it.
    ``max_chunks`` caps the chunks kept per document (0: no cap); 1 keeps only the
    opening window, cut at the token limit, which is how benchmark suites such as MTEB
    embed a document (the model truncates the rest).
    """

    max_tokens: int = 254
    overlap_tokens: int = 32
    max_chunks: int = 0

    def __post_init__(self) -> None:
        _check_types(self, "chunking")
        if self.max_chunks < 0:
            raise ConfigError(f"chunking.max_chunks must be 0 (no cap) or more, got {self.max_chunks}")
        if self.max_tokens < 8:
            raise ConfigError(f"chunking.max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ConfigError(
                f"chunking.overlap_tokens must be between 0 and max_tokens - 1 "
                f"({self.max_tokens - 1}), got {self.overlap_tokens}"
            )


@dataclass(frozen=True)
class VectorConfig:
    """The FAISS side: an index factory description, the metric and the search-time knobs.

    The default is exact search ("Flat"): it is what the quality figures are measured
    with, fast enough to a few hundred thousand chunks, and an approximate index must
    never cost quality silently. ``auto`` stays exact up to 300,000 chunks and uses
    HNSW32 above; ``ef_search`` (HNSW) and ``nprobe`` (IVF) trade speed for recall.
    """

    description: str = "Flat"
    metric: str = "cosine"
    ef_search: int = 128
    nprobe: int = 32

    def __post_init__(self) -> None:
        _check_types(self, "vectors")
        check_description(self.description)
        if self.ef_search < 1 or self.nprobe < 1:
            raise ConfigError(f"vectors.ef_search and vectors.nprobe must be positive, got {self.ef_search} and {self.nprobe}")
        if self.metric != "cosine":
            raise ConfigError(f"vectors.metric {self.metric!r} is not supported; use 'cosine'")


@dataclass(frozen=True)
class SearchConfig:
    """How the index ranks when a search does not say: what ``searchkit tune`` writes.

    ``mode``, ``fusion`` and ``hybrid_weight`` (the dense share of a weighted fusion) are
    the defaults of every search; ``k1`` and ``b`` are BM25's term-frequency saturation and
    length normalisation for lexical and hybrid searches. k1 = 0.9, b = 0.4 are Anserini's
    defaults, at or above the reference BM25 on every collection measured
    (``benchmarks/results/lexical_beir.md``). ``feedback`` is how far a hybrid search moves
    the query vector towards its top fused chunks before the dense side searches again
    (0: no second search; RRF takes none). Weight 0.6 with feedback 0.5 or 1 was best on the
    mean of any two of SciFact, NPL and Cranfield, and better on the third than the fusion
    before it; the two feedbacks tie on the mean of all three, and the smaller moves the
    query less (``benchmarks/results/fusion_variants.md``).
    """

    mode: str = "dense"
    fusion: str = "weighted"
    hybrid_weight: float = 0.6
    k1: float = 0.9
    b: float = 0.4
    feedback: float = 0.5

    def __post_init__(self) -> None:
        _check_types(self, "search")
        if self.mode not in ("dense", "lexical", "hybrid"):
            raise ConfigError(f"search.mode must be dense, lexical or hybrid, got {self.mode!r}")
        if self.fusion not in ("weighted", "rrf"):
            raise ConfigError(f"search.fusion must be weighted or rrf, got {self.fusion!r}")
        if not 0.0 <= self.hybrid_weight <= 1.0:
            raise ConfigError(f"search.hybrid_weight must be between 0 and 1, got {self.hybrid_weight}")
        if not 0.0 <= self.k1 <= 10.0 or not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"search.k1 must be between 0 and 10 and search.b between 0 and 1, got {self.k1} and {self.b}")
        if not 0.0 <= self.feedback <= 10.0:
            raise ConfigError(f"search.feedback must be between 0 and 10, got {self.feedback}")


@dataclass(frozen=True)
class IndexConfig:
    """Everything that decides what an index contains, as data."""

    model: ModelIdentity
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    vectors: VectorConfig = field(default_factory=VectorConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check_types(self, "index")
        if self.chunking.max_tokens > self.model.max_seq_length - 2:
            raise ConfigError(
                f"chunking.max_tokens ({self.chunking.max_tokens}) exceeds what the model reads "
                f"({self.model.max_seq_length - 2} word pieces plus 2 special tokens); lower it"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        """Rebuild a config from ``to_dict`` output.

        Unknown keys and a missing model are errors; missing chunking, vector or search sections
        take their defaults, so older manifests written before a section existed still open.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"invalid index configuration: expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"model", "chunking", "vectors", "search", "schema_version"})
        if unknown:
            raise ConfigError(f"invalid index configuration: unknown keys {', '.join(map(repr, unknown))}")
        try:
            version = data.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise ConfigError(
                    f"index schema version {version} is not supported by this searchkit "
                    f"(supports {SCHEMA_VERSION}); rebuild the index or upgrade searchkit"
                )
            return cls(
                model=ModelIdentity(**data["model"]),
                chunking=ChunkingConfig(**data.get("chunking", {})),
                vectors=VectorConfig(**data.get("vectors", {})),
                search=SearchConfig(**data.get("search", {})),
                schema_version=version,
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"invalid index configuration: {exc}") from exc
