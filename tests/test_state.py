"""What the index directory says stays true: deletes persist, failed changes change nothing, repairs are saved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_CORPUS
from searchkit import ConfigError, Document, Index, IndexLockedError
from searchkit.state import MANIFEST_FILE, VECTORS_FILE, VECTORS_STATE_FILE, IndexDirectory

DIMENSION = 384


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def vectors_index(make_index) -> tuple[Index, np.ndarray]:
    vectors = unit_vectors(300)
    index = make_index()
    index.add([Document(f"v{i}", f"document {i}", metadata={"n": i}) for i in range(300)], embeddings=vectors)
    return index, vectors


def test_hnsw_deletes_stay_deleted_in_a_new_process(vectors_index, embedder) -> None:
    index, vectors = vectors_index
    index.reindex("HNSW16")
    index.delete(["v0", "v1"])
    reopened = Index.open(index.path, model=embedder)  # what a new process sees
    hits = reopened.search_vectors(vectors[:2], k=2)
    assert [len(row) for row in hits] == [2, 2]
    assert not {h.doc_id for row in hits for h in row} & {"v0", "v1"}
    info = reopened.info()
    assert info["counts"]["vectors"] == info["counts"]["chunks"] == 298
    assert reopened.vectors.masked == index.vectors.masked and len(reopened.vectors.masked) == 2


def test_hnsw_rebuild_threshold_counts_deletes_made_by_earlier_processes(vectors_index, embedder) -> None:
    index, _ = vectors_index
    index.reindex("HNSW16")
    for start in range(0, 32, 8):  # 32 deletes (over 10% of 300), each in a process of its own
        with Index.open(index.path, model=embedder) as writer:
            writer.delete([f"v{i}" for i in range(start, start + 8)])
    reopened = Index.open(index.path, model=embedder)
    assert not reopened.vectors.masked, "over 10% deleted across processes: the graph was rebuilt without them"
    assert len(reopened.vectors) == reopened.store.counts()[1] == 268


def test_failed_reindex_leaves_manifest_and_vectors_exactly_as_they_were(make_index, embedder) -> None:
    index = make_index()
    index.add([Document(f"d{i}", f"text {i}") for i in range(50)], embeddings=unit_vectors(50))
    before = {name: (index.path / name).read_bytes() for name in (MANIFEST_FILE, VECTORS_FILE, VECTORS_STATE_FILE)}
    with pytest.raises(ConfigError, match=r"IVF4096,Flat needs at least 4,096 stored vectors .* holds 50"):
        index.reindex("IVF4096,Flat")
    after = {name: (index.path / name).read_bytes() for name in before}
    assert after == before
    assert index.config.vectors.description == "Flat" and index.vectors.description == "Flat"
    (index.path / VECTORS_FILE).unlink()  # the vector file lost later: the index still opens
    reopened = Index.open(index.path, model=embedder)
    assert reopened.config.vectors.description == "Flat" and len(reopened.vectors) == 50


def test_search_vectors_normalises_queries(vectors_index) -> None:
    index, vectors = vectors_index
    unit = index.search_vectors(vectors[:1], k=3)[0]
    scaled = index.search_vectors(vectors[:1] * 37.5, k=3)[0]
    assert [h.doc_id for h in scaled] == [h.doc_id for h in unit] and scaled[0].doc_id == "v0"
    assert scaled[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in scaled] == pytest.approx([h.score for h in unit], abs=1e-5)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "state garbage"])
def test_damaged_vector_file_is_repaired_once_and_saved(vectors_index, embedder, damage: str) -> None:
    index, vectors = vectors_index
    expected = [h.doc_id for h in index.search_vectors(vectors[5:6], k=5)[0]]
    faiss_file, state_file = index.path / VECTORS_FILE, index.path / VECTORS_STATE_FILE
    if damage == "missing":
        faiss_file.unlink()
    elif damage == "garbage":
        faiss_file.write_bytes(b"not a faiss index")
    elif damage == "truncated":
        faiss_file.write_bytes(faiss_file.read_bytes()[:1000])
    else:
        state_file.write_text("{")
    repaired = Index.open(index.path, model=embedder)
    assert repaired.notices and "rebuilt" in repaired.notices[0]
    assert [h.doc_id for h in repaired.search_vectors(vectors[5:6], k=5)[0]] == expected
    again = Index.open(index.path, model=embedder)
    assert again.notices == [], "the repair was saved, so the next process does not repeat it"
    assert json.loads(state_file.read_text())["count"] == 300


def test_lagging_vector_file_is_caught_up_by_a_reader_while_a_writer_holds_the_lock(vectors_index, embedder) -> None:
    index, vectors = vectors_index
    stale = {name: (index.path / name).read_bytes() for name in (VECTORS_FILE, VECTORS_STATE_FILE)}
    index.delete(["v5"])
    for name, data in stale.items():
        (index.path / name).write_bytes(data)
    with IndexDirectory(index.path).write_lock():  # another writer is busy: catch up in memory only
        reader = Index.open(index.path, model=embedder)
        assert "v5" not in {h.doc_id for h in reader.search_vectors(vectors[5:6], k=3)[0]}
        assert (index.path / VECTORS_STATE_FILE).read_bytes() == stale[VECTORS_STATE_FILE]
    Index.open(index.path, model=embedder)  # no writer: caught up and saved
    assert json.loads((index.path / VECTORS_STATE_FILE).read_text())["count"] == 299


def test_ivf_asked_for_before_there_is_enough_to_train_comes_to_exist_when_there_is(make_index) -> None:
    index = make_index()
    index.reindex("IVF4,Flat")
    assert index.config.vectors.description == "IVF4,Flat" and index.vectors.description == "Flat"
    index.add([Document(f"d{i}", f"text {i}") for i in range(200)], embeddings=unit_vectors(200))
    assert index.vectors.description == "IVF4,Flat" and len(index.vectors) == 200
    hits = index.search_vectors(unit_vectors(200)[7:8], k=1)[0]
    assert hits[0].doc_id == "d7"


def test_writes_wait_for_the_lock_only_as_long_as_asked(vectors_index, embedder) -> None:
    index, _ = vectors_index
    waiting = Index.open(index.path, model=embedder, lock_timeout=0.3)
    with IndexDirectory(index.path).write_lock():
        with pytest.raises(IndexLockedError, match=r"after waiting 0.3 s; .*--wait"):
            waiting.delete(["v1"])
        assert waiting.search_vectors(unit_vectors(1), k=1)[0], "readers never wait for the lock"
    assert waiting.delete(["v1"]).deleted == ["v1"]


def test_threads_search_one_index_while_another_object_writes(vectors_index, embedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    index, vectors = vectors_index
    writer = Index.open(index.path, model=embedder)
    extra = unit_vectors(60, seed=9)

    def search(row: int) -> list[str]:
        return [h.doc_id for h in index.search_vectors(vectors[row % 300][None, :], k=3)[0]]

    with ThreadPoolExecutor(max_workers=6) as pool:
        pending = [pool.submit(search, row) for row in range(300)]
        for start in range(0, 60, 10):
            writer.add([Document(f"x{i}", f"extra {i}") for i in range(start, start + 10)], embeddings=extra[start:start + 10])
        results = [future.result() for future in pending]
    assert all(len(ids) == 3 and ids[0] == f"v{row % 300}" for row, ids in enumerate(results))
    assert index.search_vectors(extra[59:60], k=1)[0][0].doc_id == "x59", "the reader caught up with the writer"


def test_a_long_lived_index_takes_up_search_settings_another_process_writes(tmp_path: Path, embedder) -> None:
    """`searchkit tune` beside a running `searchkit serve`: the server must rank as the manifest now says."""
    from searchkit.config import SearchConfig

    with Index.create(tmp_path / "idx", model=embedder) as writer:
        writer.add(SMALL_CORPUS)
    served = Index.open(tmp_path / "idx", model=embedder)
    query = "pets that purr or bark"
    dense = [(h.doc_id, round(h.score, 6)) for h in served.search(query, 5)]
    with Index.open(tmp_path / "idx", model=embedder) as tuner:  # another process, as far as `served` knows
        tuner.configure_search(SearchConfig(mode="lexical", k1=1.5))
        lexical = [(h.doc_id, round(h.score, 6)) for h in tuner.search(query, 5)]
    assert lexical != dense
    assert [(h.doc_id, round(h.score, 6)) for h in served.search(query, 5)] == lexical
    assert served.config.search == SearchConfig(mode="lexical", k1=1.5)
    served.close()
