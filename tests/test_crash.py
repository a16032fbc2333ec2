"""A real ingest process killed with SIGKILL leaves an index that opens, answers and completes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from searchkit import Index

DOCUMENTS = 400


def _count_documents(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def _ingest(corpus: Path, index: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "searchkit.cli", "index", str(corpus), "--index", str(index),
               "--batch-chars", "2000", "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_ingest_leaves_a_consistent_index_that_completes(tmp_path: Path, embedder) -> None:
    corpus = tmp_path / "corpus.jsonl"
    texts = {f"doc-{i:03d}": f"Record {i} describes item number {i}, a widget of colour {i % 7} and size {i % 11}. " * 3
             for i in range(DOCUMENTS)}
    corpus.write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in texts.items()))
    index_dir = tmp_path / "idx"

    process = _ingest(corpus, index_dir)
    deadline = time.monotonic() + 240
    while _count_documents(index_dir / "store.sqlite") < 40:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    index = Index.open(index_dir, model=embedder)
    present, chunks = index.store.counts()
    assert 40 <= present < DOCUMENTS, "the kill should land mid-ingest"
    assert len(index.vectors) == chunks
    rows = index.store.chunk_rows(index.store.all_chunk_ids().tolist())
    by_doc: dict[str, list] = {}
    for row in rows.values():
        by_doc.setdefault(row.doc_id, []).append(row)
    assert len(by_doc) == present
    for doc_id, doc_rows in by_doc.items():  # each document is whole: its chunks cover its text
        text = texts[doc_id]
        assert min(r.start for r in doc_rows) == 0 and max(r.end for r in doc_rows) == len(text.rstrip())
    some_present = sorted(by_doc)[0]
    assert index.search(texts[some_present], k=1)[0].doc_id == some_present
    index.close()

    finished = _ingest(corpus, index_dir)
    out, err = finished.communicate(timeout=600)
    assert finished.returncode == 0, err.decode()
    assert f"{DOCUMENTS - present} added, 0 updated, {present} unchanged" in out.decode() and "0 failed" in out.decode()
    index = Index.open(index_dir, model=embedder)
    assert index.store.counts()[0] == DOCUMENTS and len(index.vectors) == index.store.counts()[1]
    assert index.search(texts["doc-399"], k=1)[0].doc_id == "doc-399"
