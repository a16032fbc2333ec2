"""An embedding cache keyed by (model identity, text), shared by every index on the machine.

Evaluating settings means building several indexes over one corpus, and rebuilding one
after a change; with the cache, a text already embedded by the same weights is read back
instead of embedded again. It wraps any :class:`Embedder` and keeps one SQLite file per
model (named by the weights hash), so different models can never mix.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searchkit.config import ModelIdentity
from searchkit.embedding import Embedder

__all__ = ["CachedEmbedder", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$SEARCHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/searchkit``, else ``~/.cache/searchkit``."""
    if configured := os.environ.get("SEARCHKIT_CACHE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "searchkit"


class CachedEmbedder:
    """An :class:`Embedder` that remembers every vector it has produced.

    ``hits`` and ``misses`` count texts served from the cache and texts embedded, so
    callers (and tests) can see that a second pass embedded nothing.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        identity = inner.identity
        folder = (cache_dir or default_cache_dir()) / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{identity.weights_sha256[:32]}-{identity.dimension}.sqlite"
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
