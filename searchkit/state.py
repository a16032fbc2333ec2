"""The one owner of what an index directory says about itself: manifest, vector file, lock.

An index directory holds::

    manifest.json   the configuration as data (IndexConfig.to_dict()), and the counts
    store.sqlite    documents, chunks, metadata and embeddings: the source of truth
    vectors.faiss   the FAISS index over chunk ids (derived; rebuilt from the store)
    vectors.json    the store generation vectors.faiss reflects, its kind, and backend state
                    (the ids an HNSW graph masks as deleted)
    write.lock      held by the one process allowed to write

Every other module asks :class:`IndexState` to change these files, so the rules live in
one place: files are written only under the write lock, each to a temporary file that is
flushed and renamed over the old one (then the directory is synced), in the order vector
file, vector state, manifest, and only once the new state exists in full. A reader that
opens while a writer works, or after a crash, finds a vector file that lags the store or
is missing; it is caught up from the stored embeddings, and saved when no writer is busy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from searchkit.config import IndexConfig, VectorConfig
from searchkit.errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, SearchkitError, StoreWriteError
from searchkit.store import Store
from searchkit.vectors import VectorBackend, build, build_problem, empty, kind_of, load, resolve_description

__all__ = [
    "IndexState",
    "IndexDirectory",
    "read_manifest",
    "atomic_write",
    "MANIFEST_FILE",
    "STORE_FILE",
    "VECTORS_FILE",
    "VECTORS_STATE_FILE",
    "LOCK_FILE",
    "INDEX_FILES",
]

MANIFEST_FILE = "manifest.json"
STORE_FILE = "store.sqlite"
VECTORS_FILE = "vectors.faiss"
VECTORS_STATE_FILE = "vectors.json"
LOCK_FILE = "write.lock"
INDEX_FILES = frozenset({MANIFEST_FILE, STORE_FILE, VECTORS_FILE, VECTORS_STATE_FILE, LOCK_FILE,
                         f"{STORE_FILE}-wal", f"{STORE_FILE}-shm"})

log = logging.getLogger("searchkit")


def atomic_write(path: Path, data: bytes | Callable[[Path], None]) -> None:
    """Write ``data`` so readers see the old file or the new one, never half of either, even after a power cut.

    ``data`` is the bytes, or a function that writes the file at the path it is given
    (so a large FAISS index goes to disk without a copy in memory).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(data):
            data(temporary)
        else:
            temporary.write_bytes(data)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: FAISS reports a failed write so
        temporary.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[-1]
        raise StoreWriteError(
            f"cannot write {path} ({reason}); the previous file is intact. If the disk is full or a file-size "
            "limit was reached, free some space and run the command again"
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(folder: Path) -> None:
    """Make a rename durable: fsync the directory entry itself (a no-op where unsupported)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def read_manifest(path: Path) -> IndexConfig:
    """The configuration of the index at ``path``, with an error that says what to do if there is none."""
    manifest_path = path / MANIFEST_FILE
    if not path.exists():
        raise IndexNotFoundError(f"no index at {path}; create one with 'searchkit index FILES... --index {path}'")
    if not manifest_path.exists():
        raise IndexNotFoundError(
            f"{path} is not a searchkit index (no {MANIFEST_FILE}); "
            f"create one with 'searchkit index FILES... --index {path}'"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        return IndexConfig.from_dict(data["config"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptError(
            f"{manifest_path} is unreadable ({exc}); the manifest cannot be derived from the other files: "
            f"restore it from a backup, or build a new index from your documents"
        ) from exc


class IndexDirectory:
    """The files of one index directory and its write lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(path / LOCK_FILE)

    @contextmanager
    def write_lock(self, timeout: float = 0) -> Iterator[None]:
        """Hold the write lock, waiting up to ``timeout`` seconds for another writer to finish."""
        try:
            self._lock.acquire(timeout=max(timeout, 0))
        except Timeout:
            waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
            raise IndexLockedError(
                f"another process is writing to the index at {self.path}{waited}; wait for it to finish and "
                "try again (the command line's --wait SECONDS waits for it)"
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def lock_if_free(self) -> Iterator[bool]:
        """Hold the write lock if no other process does; yields whether it is held."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            self._lock.release()

    @property
    def locked_here(self) -> bool:
        return self._lock.is_locked

    def read_vectors(self, dimension: int) -> tuple[VectorBackend, dict[str, Any]] | str:
        """The saved backend and the state it claims, or why it cannot be used.

        The state file is read before the index: a writer replaces the index first, so a
        newer index may be paired with an older generation (caught up, which is safe);
        the reverse pairing cannot happen.
        """
        try:
            state = json.loads((self.path / VECTORS_STATE_FILE).read_text(encoding="utf-8"))
            generation, description = int(state["generation"]), str(state["description"])
            if not (self.path / VECTORS_FILE).is_file():
                return f"{VECTORS_FILE} is missing"
            backend = load(dimension, description, self.path / VECTORS_FILE, state.get("backend", {}))
        except FileNotFoundError as exc:
            return f"{Path(exc.filename).name} is missing"
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            return f"the vector files are unreadable ({exc})"
        if int(state.get("count", -1)) != int(backend.index.ntotal):
            return f"{VECTORS_FILE} holds {backend.index.ntotal:,} vectors but {VECTORS_STATE_FILE} says {state.get('count')}"
        # Files from before masks were saved may hold deleted HNSW vectors unmasked: treat
        # them as lagging (generation -1), so the next refresh compares ids with the store.
        generation = generation if "backend" in state else -1
        return backend, {"generation": generation, "requested": state.get("requested")}

    def write(self, config: IndexConfig, backend: VectorBackend, generation: int, counts: tuple[int, int]) -> None:
        """Write vector file, vector state and manifest, in that order, each atomically."""
        atomic_write(self.path / VECTORS_FILE, backend.write)
        state = {
            "generation": generation,
            "count": int(backend.index.ntotal),
            "description": backend.description,
            "requested": config.vectors.description,
            "backend": backend.state(),
        }
        atomic_write(self.path / VECTORS_STATE_FILE, json.dumps(state).encode())
        manifest = {
            "format": "searchkit-index",
            "config": config.to_dict(),
            "counts": {"documents": counts[0], "chunks": counts[1]},
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write(self.path / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())


class IndexState:
    """The configuration and the vector backend, and the store generation they reflect.

    ``refresh`` catches the backend up with the store (another writer, or a crash, may
    have moved it on); ``apply`` records one committed batch; ``save`` writes everything
    under the lock. ``notices`` says what was repaired, in words a user can act on.
    """

    def __init__(self, directory: IndexDirectory, config: IndexConfig, store: Store) -> None:
        self.directory = directory
        self.config = config
        self.store = store
        self.backend: VectorBackend = empty(config.model.dimension)
        self.generation = -1
        self.notices: list[str] = []
        # Threads of one process share the backend: changes to it, and searches through it,
        # hold this lock (a search never sees a half-applied batch; FAISS is not safe to
        # search while it is being changed).
        self.lock = threading.RLock()
        self._manifest_seen = self._manifest_stamp()

    @property
    def dimension(self) -> int:
        return self.config.model.dimension

    # Opening

    @classmethod
    def create(cls, directory: IndexDirectory, config: IndexConfig, store: Store) -> IndexState:
        """The state of a new, empty index, written to disk (the caller holds the lock)."""
        state = cls(directory, config, store)
        state.generation = store.generation()
        state._configure(state.backend)
        state.save()
        return state

    @classmethod
    def load(cls, directory: IndexDirectory, config: IndexConfig, store: Store) -> IndexState:
        """The saved state, repaired from the store if it is missing, unreadable, of the wrong kind or lagging.

        A repair is saved at once when no writer holds the lock (so it happens once, not
        in every process that opens the index), and kept in memory otherwise (the
        writer saves it when it finishes).
        """
        state = cls(directory, config, store)
        loaded = directory.read_vectors(state.dimension)
        if isinstance(loaded, str):
            state._rebuild(f"{loaded}; rebuilt it from the stored embeddings")
        else:
            backend, saved = loaded
            state._configure(backend)
            state.backend, state.generation = backend, saved["generation"]
            if saved["requested"] not in (None, config.vectors.description):
                state._rebuild(
                    f"the vector file was built for {saved['requested']} but the manifest asks for "
                    f"{config.vectors.description}; rebuilt it"
                )
        repaired = bool(state.notices) or state.generation != store.generation() or state._wants_other_kind()
        if repaired:
            with directory.lock_if_free() as held:
                if held:
                    state.refresh()
                    state.save()
                else:
                    state.refresh()
        for notice in state.notices:
            log.warning("%s: %s", directory.path, notice)
        return state

    # Keeping the vectors in step with the store

    def refresh(self) -> None:
        """Catch the backend up with the store if another writer (or a crash) moved it on.

        Chunk ids are never reused and a chunk's embedding never changes, so the
        difference between the id sets is exactly what to add and remove.
        """
        with self.lock:
            self._follow_search_settings()
            generation = self.store.generation()
            if generation == self.generation:
                return
            stored_ids = self.store.all_chunk_ids()
            held_ids = self.backend.ids()
            self.backend.remove(np.setdiff1d(held_ids, stored_ids, assume_unique=True))
            missing = np.setdiff1d(stored_ids, held_ids, assume_unique=True)
            if len(missing):
                ids, vectors = self.store.embeddings_for(missing, self.dimension)
                self.backend.add(ids, vectors)
            self.generation = generation

    def apply(self, removed: np.ndarray, new_ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        """Record one batch the store has committed (the caller holds the lock and was in step before it)."""
        with self.lock:
            self.backend.remove(removed)
            self.backend.add(new_ids, vectors)
            self.generation = generation

    def _stored(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Every stored (ids, vectors), from one consistent read, and the generation they are at."""
        generation = self.store.generation()
        pages = list(self.store.embeddings(self.dimension))
        if self.store.generation() != generation:  # a writer committed in between: read again
            return self._stored()
        ids = np.concatenate([p[0] for p in pages]) if pages else np.zeros(0, np.int64)
        vectors = np.concatenate([p[1] for p in pages]) if pages else np.zeros((0, self.dimension), np.float32)
        return ids, vectors, generation

    def _build(self, vectors_config: VectorConfig) -> tuple[VectorBackend, int]:
        """A new backend of the configured kind over every stored embedding (ConfigError if it cannot be trained)."""
        ids, vectors, generation = self._stored()
        backend = build(self.dimension, vectors_config.description, ids, vectors)
        self._configure(backend, vectors_config)
        return backend, generation

    def _rebuild(self, notice: str | None = None) -> None:
        """Rebuild from the store as configured, or as exact search while there is too little to train on."""
        description = self.config.vectors.description
        count = self.store.counts()[1]
        problem = build_problem(description, count, self.dimension)
        config = self.config.vectors if problem is None else replace(self.config.vectors, description="Flat")
        self.backend, self.generation = self._build(config)
        if notice:
            self.notices.append(notice)

    def _wants_other_kind(self) -> bool:
        """True when the configured kind differs from the one held and could now be built.

        This is how ``auto`` moves to HNSW as a collection grows, and how an IVF index
        asked for before there was enough to train it comes to exist.
        """
        description, count = self.config.vectors.description, len(self.backend)
        wanted = resolve_description(description, count, self.dimension)
        return kind_of(wanted) != kind_of(self.backend.description) and build_problem(description, count, self.dimension) is None

    def _configure(self, backend: VectorBackend, vectors_config: VectorConfig | None = None) -> None:
        knobs = vectors_config or self.config.vectors
        backend.ef_search, backend.nprobe = knobs.ef_search, knobs.nprobe

    def reconfigure(self, vectors_config: VectorConfig) -> None:
        """Switch the vector index kind or knobs: build the new backend first, then swap and save.

        If the build fails (too few vectors to train, a bad description), nothing has
        changed: the manifest, the vector file and this object are exactly as they were.
        An empty index takes the setting and searches exactly until there is enough to
        train on; the first ingest that brings enough builds the kind asked for.
        """
        with self.lock:
            resolve_description(vectors_config.description, len(self.backend), self.dimension)  # validates early
            if self.store.counts()[1] == 0:  # nothing to train on yet: exact search until there is
                vectors_config_now = replace(vectors_config, description="Flat")
                backend, generation = self._build(vectors_config_now)
                self._configure(backend, vectors_config)
            else:
                backend, generation = self._build(vectors_config)
            self.config = replace(self.config, vectors=vectors_config)
            self.backend, self.generation = backend, generation
            self.save()

    def save(self) -> None:
        """Write the state (the caller holds the write lock); rebuild first if the backend asks for it."""
        with self.lock:
            if not self.directory.locked_here:
                raise RuntimeError("IndexState.save needs the write lock")
            if self.backend.needs_rebuild or self._wants_other_kind():
                self._rebuild()
            self.directory.write(self.config, self.backend, self.generation, self.store.counts())
            self._manifest_seen = self._manifest_stamp()

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.directory.path / MANIFEST_FILE)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def _follow_search_settings(self) -> None:
        """Take up search settings another process wrote (``searchkit tune`` beside a running server).

        Without this a long-lived process (``searchkit serve``) would go on ranking with the
        settings it opened with, and return other hits than ``searchkit search`` on the same
        index. One ``stat`` per search; the manifest is read only when it changed.
        """
        stamp = self._manifest_stamp()
        if stamp == self._manifest_seen:
            return
        self._manifest_seen = stamp
        try:
            on_disk = read_manifest(self.directory.path)
        except SearchkitError as exc:  # a damaged manifest is the next open's to report; keep what is known
            log.debug("%s: manifest not re-read (%s)", self.directory.path, exc)
            return
        if on_disk.search != self.config.search:
            self.config = replace(self.config, search=on_disk.search)

