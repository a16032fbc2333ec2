"""Caches shared by every index on the machine: embeddings, and small JSON records of facts.

Evaluating settings means building several indexes over one corpus, and rebuilding one
after a change; with :class:`CachedEmbedder`, a text already embedded by the same weights
in the same precision is read back instead of embedded again. It wraps any
:class:`Embedder` and keeps one SQLite file per model and precision (named by the weights
hash and the precision), so vectors of different models, or of float32 and bfloat16
arithmetic, never mix.

:class:`JsonCache` keeps facts that are slow to learn and cheap to keep (a model's weights
hash, which precision is fastest on this machine) in one JSON file each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searchkit.config import ModelIdentity

if TYPE_CHECKING:  # embedding.py imports this module
    from searchkit.embedding import Embedder

__all__ = ["CachedEmbedder", "JsonCache", "default_cache_dir"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SEARCHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/searchkit``, else ``~/.cache/searchkit``."""
    if configured := os.environ.get("SEARCHKIT_CACHE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "searchkit"


class JsonCache:
    """One JSON file in the searchkit cache folder mapping keys to entries, replaced atomically.

    An unreadable file, or one written by another version of an entry's shape, counts as
    empty and is rewritten; an unwritable folder only costs the next run the work again.
    """

    def __init__(self, name: str, version: int, path: Path | None = None) -> None:
        self.path = path or default_cache_dir() / name
        self.version = version

    def entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if isinstance(data, dict) and data.get("version") == self.version and isinstance(data.get("entries"), dict):
            return data["entries"]
        return {}

    def get(self, key: str) -> Any:
        return self.entries().get(key)

    def put(self, key: str, entry: Any) -> None:
        entries = self.entries()
        entries[key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".json", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"version": self.version, "entries": entries}, out, indent=1)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.debug("cannot write the cache file %s: %s", self.path, exc)


class CachedEmbedder:
    """An :class:`Embedder` that remembers every vector it has produced.

    The file is per model and per precision of the wrapped embedder (float32 keeps the
    name it had before precisions existed, so older caches stay valid). Queries
    (``encode_queries``) pass straight through: they are cheap, and their encoder may
    differ from the passages' one.

    ``hits`` and ``misses`` count texts served from the cache and texts embedded, so
    callers (and tests) can see that a second pass embedded nothing.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        identity = inner.identity
        folder = (cache_dir or default_cache_dir()) / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if identity.precision == "fp32" else f"-{identity.precision}"
        self.path = folder / f"{identity.weights_sha256[:32]}-{identity.dimension}{suffix}.sqlite"
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> ModelIdentity:
        return self.inner.identity

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return self.inner.token_offsets(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        from searchkit.embedding import encode_queries

        return encode_queries(self.inner, texts)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        dimension = self.identity.dimension
        keys = [hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() for text in texts]
        found = self._lookup(set(keys))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            first_text = {key: text for key, text in zip(keys, texts)}
            fresh = self.inner.encode([first_text[k] for k in missing], batch_size=batch_size, show_progress=show_progress)
            with self._db:
                self._db.executemany(
                    "INSERT OR IGNORE INTO vectors (key, vector) VALUES (?, ?)",
                    [(key, vector.tobytes()) for key, vector in zip(missing, fresh)],
                )
            found.update(zip(missing, fresh))
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if not keys:
            return np.zeros((0, dimension), dtype=np.float32)
        return np.vstack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _lookup(self, keys: set[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        ordered = list(keys)
        for start in range(0, len(ordered), 500):
            batch = ordered[start:start + 500]
            marks = ",".join("?" * len(batch))
            for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", batch):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def close(self) -> None:
        self._db.close()
