"""Splitting an index into shards: N ordinary searchkit indexes, by a hash of the document id.

Each shard is built by the normal ingest (the same chunking, the same store, the same
vector index type and search settings) with an embedder that only looks vectors up: the
source's stored embedding of exactly the text being embedded. Nothing is re-embedded,
and a chunk the source does not hold (it was built with other chunking, say) is an
error, never a fresh vector. A shard's memory is that of one shard's vectors.

``shards.json`` in the output folder records the layout: how many shards, their folders,
and the metadata field types of the whole collection (each shard's own are a subset; a
filter is checked against the collection's, exactly as the unsharded index checks it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchkit.chunking import embedding_input
from searchkit.config import ModelIdentity
from searchkit.document import Document
from searchkit.embedding import Embedder
from searchkit.errors import ConfigError, IndexCorruptError, IndexNotFoundError, SearchkitError
from searchkit.index import Index

__all__ = ["SHARDS_FILE", "ShardLayout", "ShardReport", "StoredVectors", "shard_index", "shard_of"]

SHARDS_FILE = "shards.json"
LAYOUT_VERSION = 1
# Documents listed per read of the source while a shard is filled.
PAGE = 500


def shard_of(doc_id: str, shards: int) -> int:
    """The shard a document belongs to: the first 8 bytes of its id's sha256, modulo the shard count.

    Stable across processes, machines and Python versions (unlike ``hash()``), so a
    document's shard is known from its id alone.
    """
    digest = hashlib.sha256(doc_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards


@dataclass(frozen=True)
class ShardLayout:
    """What ``shards.json`` says: the shard folders (relative to it) and the collection's field types."""

    shards: int
    folders: tuple[str, ...]
    field_types: dict[str, list[str]]
    source: str = ""
    version: int = LAYOUT_VERSION

    def paths(self, root: Path) -> list[Path]:
        return [root / folder for folder in self.folders]

    @classmethod
    def read(cls, root: str | Path) -> ShardLayout:
        path = Path(root) / SHARDS_FILE
        if not path.is_file():
            raise IndexNotFoundError(f"{root} holds no {SHARDS_FILE}; make shards with: searchkit shard INDEX --shards N --out {root}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            layout = cls(
                shards=int(data["shards"]), folders=tuple(data["folders"]), field_types=dict(data["field_types"]),
                source=str(data.get("source", "")), version=int(data["version"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexCorruptError(f"{path} cannot be read ({exc}); make the shards again") from exc
        if layout.version != LAYOUT_VERSION or layout.shards != len(layout.folders) or layout.shards < 1:
            raise IndexCorruptError(f"{path} describes {layout.shards} shards in {len(layout.folders)} folders (version {layout.version}); make the shards again")
        return layout

    def write(self, root: Path) -> None:
        handle, temporary = tempfile.mkstemp(prefix=".shards-", suffix=".json", dir=root)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(asdict(self) | {"folders": list(self.folders)}, out, indent=1)
        os.replace(temporary, root / SHARDS_FILE)


@dataclass
class ShardReport:
    """What a split made: documents and chunks per shard, and how long it took."""

    out: str
    documents: list[int] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StoredVectors:
    """An :class:`~searchkit.embedding.Embedder` that gives back vectors the source index already holds.

    ``encode`` looks each text up by its sha256 among the chunks loaded with :meth:`load`;
    a text it does not hold is an error. Chunking uses the source model's tokenizer.
    """

    def __init__(self, identity: ModelIdentity, tokenizer: Embedder) -> None:
        self._identity = identity
        self._tokenizer = tokenizer
        self._vectors: dict[bytes, np.ndarray] = {}

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return self._tokenizer.token_offsets(texts)

    def load(self, source: Index, keep: set[str]) -> None:
        """Hold the stored vectors of the chunks of the documents in ``keep`` (and only those)."""
        self._vectors = {}
        dimension = source.config.model.dimension
        for ids, vectors in source.store.embeddings(dimension):
            rows = source.store.chunk_rows(ids.tolist())
            for chunk_id, vector in zip(ids.tolist(), vectors):
                row = rows.get(chunk_id)
                if row is not None and row.doc_id in keep:
                    self._vectors[_key(embedding_input(row.title, row.text))] = vector.copy()

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._identity.dimension), dtype=np.float32)
        try:
            return np.vstack([self._vectors[_key(text)] for text in texts]).astype(np.float32, copy=False)
        except KeyError:
            raise IndexCorruptError(
                "a chunk of the source index has no stored embedding for its text (the store changed during the split, "
                "or its chunking differs from its manifest); nothing was re-embedded: run searchkit shard again"
            ) from None


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def shard_index(
    source: str | Path, shards: int, out: str | Path, *, model: str | Embedder | None = None, progress: bool = False
) -> ShardReport:
    """Split the index at ``source`` into ``shards`` indexes in ``out`` (``shard-00``, ...) plus ``shards.json``.

    Each shard has the source's model, chunking, vector index type and search settings,
    and the chunks and stored embeddings of the documents whose id hashes to it
    (:func:`shard_of`). ``out`` must be new or empty; the source is only read. ``model``
    (default: the source's own) only tokenizes, to chunk exactly as the source did.
    """
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SearchkitError(f"{out} already exists and is not an empty folder; give a new folder for the shards")
    started = time.perf_counter()
    report = ShardReport(str(out))
    with Index.open(source, model=model) as index:
        config = index.config
        embedder = StoredVectors(config.model, index.embedder)
        doc_ids = _doc_ids(index)
        out.mkdir(parents=True, exist_ok=True)
        folders = tuple(f"shard-{number:02d}" for number in range(shards))
        for number, folder in enumerate(folders):
            keep = [doc_id for doc_id in doc_ids if shard_of(doc_id, shards) == number]
            embedder.load(index, set(keep))
            with Index.create(out / folder, model=embedder, chunking=config.chunking) as shard:
                added = shard.add(_documents(index, keep), progress=progress)
                if added.failed:
                    raise IndexCorruptError(f"shard {folder} could not take {added.failed[0]}; the source index needs a look")
                shard.configure_search(config.search)
                if config.vectors != shard.config.vectors:
                    shard.reindex(config.vectors.description, ef_search=config.vectors.ef_search, nprobe=config.vectors.nprobe)
                documents, chunks = shard.store.counts()
            report.documents.append(documents)
            report.chunks.append(chunks)
        field_types = {name: sorted(kinds) for name, kinds in sorted(index.store.field_types().items())}
        ShardLayout(shards, folders, field_types, str(Path(source).resolve())).write(out)
    report.seconds = time.perf_counter() - started
    return report


def _doc_ids(index: Index) -> list[str]:
    """Every document id, in id order, read a page at a time."""
    total = len(index)
    return [document.doc_id for offset in range(0, total, PAGE) for document in index.documents(offset, PAGE).documents]


def _documents(index: Index, doc_ids: Sequence[str]) -> Iterator[Document]:
    """The whole stored documents with these ids, as they were given to the source."""
    for doc_id in doc_ids:
        stored = index.get(doc_id)
        if stored is None or stored.text is None:  # deleted since the listing: the split must not go on without it
            raise SearchkitError(f"document {doc_id!r} went away during the split; nothing may write the source meanwhile")
        yield Document(stored.doc_id, stored.text, stored.title, stored.metadata, source=stored.source)
