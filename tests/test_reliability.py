"""Trust the index: it survives SIGKILL, concurrent readers, damaged files and a full disk.

Everything goes through the public surfaces, the ``searchkit`` command line run as a
subprocess and the Python API, so the checks hold however the internals are arranged.
The store is read directly (read-only SQLite) only to count what no command reports:
full-text rows and each document's chunks. ``benchmarks/reliability.py`` runs the same
functions at scale and writes the figures to ``benchmarks/results/reliability.*``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import searchkit
from searchkit import ChunkingConfig, Document, Index, SearchkitError

# The package under test, wherever it is imported from: subprocesses run the same code.
PACKAGE_ROOT = Path(searchkit.__file__).resolve().parents[1]

INDEX_TYPES = ("Flat", "HNSW32", "IVF,Flat")
OPERATIONS = ("ingest", "delete", "reindex")
# Small chunks, so every document has several and a half-written one would show.
CHUNKING = ChunkingConfig(max_tokens=40, overlap_tokens=8)
DOCUMENTS = 120
# The killed ingest adds the last INGESTED documents back; the killed delete removes DELETED.
INGESTED = 40
DELETED = 30
BATCH_CHARS = 1500
# Seconds after the kill trigger (first batch committed / store opened) at which SIGKILL lands.
KILL_WINDOW = {"ingest": 2.0, "delete": 0.2, "reindex": 0.2}
SUBPROCESS_TIMEOUT = 600

WORDS = """apple river stone cloud lantern violin copper meadow harbor pencil orbit garden thunder velvet castle
ladder window silver forest candle mirror planet anchor basket bridge canyon desert engine falcon glacier hammer
island jacket kettle lemon magnet needle ocean pepper quartz rocket saddle tunnel umbrella valley wagon yacht zebra
acorn bamboo cactus dolphin ember feather ginger helmet igloo jungle koala lobster marble nectar olive parrot quiver
raven saffron tulip urchin vapor walnut yarn zinnia beacon cobalt dune echo fjord granite harp ivory jasper kelp
lagoon mosaic nickel oasis prism quill ribbon sphinx timber utopia vortex willow xenon yodel zephyr amber blizzard
comet drizzle emerald fossil geyser horizon indigo jade kiwi lilac meteor nebula opal pebble quasar reef summit
tundra unicorn volcano wasp yeti zircon""".split()


# The corpus


def sentences(rng: random.Random, words: int) -> str:
    parts, count = [], 0
    while count < words:
        length = rng.randint(7, 12)
        count += length
        sentence = " ".join(rng.choice(WORDS) for _ in range(length))
        parts.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(parts)


def corpus(count: int = DOCUMENTS, seed: int = 7) -> dict[str, str]:
    """Distinct documents of two or three chunks each; a document's own text finds it first."""
    rng = random.Random(seed)
    return {f"rel-{i:03d}": f"Record {i}: {sentences(rng, 40)}" for i in range(count)}


def as_documents(texts: dict[str, str]) -> list[Document]:
    return [Document(doc_id, text, metadata={"marker": doc_id, "version": 0}) for doc_id, text in texts.items()]


def write_jsonl(path: Path, texts: dict[str, str]) -> Path:
    """The corpus as the CLI reads it: the same documents and metadata as :func:`as_documents`."""
    with path.open("w") as handle:
        for doc_id, text in texts.items():
            handle.write(json.dumps({"id": doc_id, "text": text, "marker": doc_id, "version": 0}) + "\n")
    return path


def build_reference(path: Path, texts: dict[str, str], embedder: Any) -> None:
    """The whole corpus indexed in one go: what every damaged or killed copy is compared with."""
    with Index.create(path, model=embedder, chunking=CHUNKING) as index:
        report = index.add(as_documents(texts))
    assert report.added == len(texts) and not report.failed


# The command line


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "searchkit.cli", *map(str, args)]


def cli_environment() -> dict[str, str]:
    """Offline, the package under test first, one thread each: several processes share two cores."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(PACKAGE_ROOT) + (os.pathsep + path if path else ""),
    }


def run_cli(*args: object, preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args), capture_output=True, text=True, env=cli_environment(), cwd=PACKAGE_ROOT,
        timeout=SUBPROCESS_TIMEOUT, preexec_fn=preexec_fn,
    )


def run_cli_all(*commands: Sequence[object]) -> list[subprocess.CompletedProcess[str]]:
    """Several commands at once: each pays the model load, so they overlap it."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run_cli(*args), commands))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def is_one_line_error(result: subprocess.CompletedProcess[str]) -> bool:
    """Exit status 2 and a single line on stderr, no traceback."""
    return result.returncode == 2 and "Traceback" not in result.stderr and len(error_lines(result.stderr)) == 1


# Reading the store directly (read-only) for what no command reports


@dataclass
class StoreState:
    documents: dict[str, str]  # doc_id -> text
    spans: dict[str, list[tuple[int, int]]]  # doc_id -> its chunks' (start, end), in order
    chunks: int
    fts_rows: int
    orphan_chunks: int


def read_store(path: Path) -> StoreState:
    uri = f"file:{path / 'store.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=60)) as conn:
        documents = dict(conn.execute("SELECT doc_id, text FROM documents"))
        spans: dict[str, list[tuple[int, int]]] = {}
        orphans = 0
        rows = conn.execute(
            'SELECT d.doc_id, c.start, c."end" FROM chunks c LEFT JOIN documents d ON d.pk = c.document_pk '
            "ORDER BY d.doc_id, c.start, c.id"
        )
        for doc_id, start, end in rows:
            if doc_id is None:
                orphans += 1
            else:
                spans.setdefault(doc_id, []).append((start, end))
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts_rows = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
    return StoreState(documents, spans, chunks, fts_rows, orphans)


def count_documents(path: Path) -> int:
    try:
        uri = f"file:{path / 'store.sqlite'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=1)) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return -1


# The one check every surviving index must pass


@dataclass(frozen=True)
class Problem:
    kind: str  # unopenable, half_present, count_mismatch, missing, resurrected, search, index_type, error
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def family(description: str) -> str:
    return "HNSW" if description.startswith("HNSW") else "IVF" if description.startswith("IVF") else description


def check_index(
    path: Path,
    embedder: Any,
    reference: StoreState,
    *,
    index_types: Iterable[str],
    must_have: Iterable[str] = (),
    must_lack: Iterable[str] = (),
    focus: Iterable[str] = (),
    probes: int = 3,
    rng: random.Random | None = None,
) -> list[Problem]:
    """What is wrong with the index at ``path``, compared with the whole-corpus ``reference``.

    It must open; its counts of documents, chunks, full-text rows and vectors agree; each
    stored document has exactly the chunks a fresh ingest gives it (none half-present); the
    documents in ``must_have`` are there and those in ``must_lack`` are not, in the store
    and in search results; a search for a present document's text returns it first. The
    searches probe the documents in ``focus`` (what the command touched) where it can.
    """
    rng = rng or random.Random(0)
    try:
        index = Index.open(path, model=embedder)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return [Problem("unopenable", f"{type(exc).__name__}: {exc}")]
    problems: list[Problem] = []
    try:
        info = index.info()
        store = read_store(path)
        counts = info["counts"]
        figures = {
            "info documents": counts["documents"], "store documents": len(store.documents),
        }
        if len(set(figures.values())) > 1:
            problems.append(Problem("count_mismatch", str(figures)))
        figures = {
            "info chunks": counts["chunks"], "store chunks": store.chunks,
            "full-text rows": store.fts_rows, "vectors": counts["vectors"],
        }
        if len(set(figures.values())) > 1:
            problems.append(Problem("count_mismatch", str(figures)))
        if store.orphan_chunks:
            problems.append(Problem("half_present", f"{store.orphan_chunks} chunks belong to no document"))
        for doc_id, text in sorted(store.documents.items()):
            if text != reference.documents.get(doc_id):
                problems.append(Problem("half_present", f"{doc_id} holds text that was never written for it"))
            elif store.spans.get(doc_id, []) != reference.spans[doc_id]:
                problems.append(Problem(
                    "half_present", f"{doc_id} has chunks {store.spans.get(doc_id, [])}, a whole ingest gives "
                    f"{reference.spans[doc_id]}"))
        missing = sorted(set(must_have) - set(store.documents))
        if missing:
            problems.append(Problem("missing", f"{len(missing)} documents lost: {missing[:5]}"))
        resurrected = sorted(set(must_lack) & set(store.documents))
        if resurrected:
            problems.append(Problem("resurrected", f"{len(resurrected)} deleted documents present: {resurrected[:5]}"))
        kinds = {family(t) for t in index_types}
        if family(info["vector_index"]) not in kinds:
            problems.append(Problem("index_type", f"vector index {info['vector_index']}, expected {sorted(kinds)}"))
        present = sorted(store.documents)
        touched = sorted(set(focus) & set(present)) or present
        for doc_id in rng.sample(touched, min(probes, len(touched))):
            hits = index.search(store.documents[doc_id], k=3)
            if not hits or hits[0].doc_id != doc_id:
                problems.append(Problem("search", f"its own text finds {[h.doc_id for h in hits]}, not {doc_id}"))
            gone = [h.doc_id for h in hits if h.doc_id not in store.documents]
            if gone:
                problems.append(Problem("search", f"hits for documents not in the store: {gone}"))
        absent = sorted((set(must_lack) | set(focus)) - set(store.documents))
        for doc_id in rng.sample(absent, min(probes, len(absent))):
            hits = index.search(reference.documents[doc_id], k=3)
            if doc_id in {h.doc_id for h in hits}:
                problems.append(Problem("search", f"deleted {doc_id} is still found"))
    except Exception as exc:  # noqa: BLE001 - an opened index that fails a read is the finding
        problems.append(Problem("error", f"{type(exc).__name__}: {exc}"))
    finally:
        index.close()
    return problems


# 1. SIGKILL at random moments


@dataclass
class KillRun:
    operation: str
    index_type: str
    delay: float
    killed: bool = False  # the process was still running when SIGKILL landed
    returncode: int | None = None
    documents_at_kill: int = -1
    problems: list[str] = field(default_factory=list)
    rerun_problems: list[str] = field(default_factory=list)


@dataclass
class KillPlan:
    run: KillRun
    path: Path
    args: list[object]
    start_type: str
    must_have: list[str]
    must_lack: list[str]
    targets: list[str]  # what the command adds or deletes
    reference: StoreState


def store_opened(pid: int, store: Path) -> bool:
    """Whether process ``pid`` holds ``store`` open: it has loaded its model and begun the operation."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(store) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def plan_kill(
    workdir: Path, reference_dir: Path, reference: StoreState, texts: dict[str, str], operation: str,
    index_type: str, embedder: Any, rng: random.Random, corpus_file: Path,
) -> KillPlan:
    """A copy of the reference index set up for one killed command."""
    path = workdir / f"{operation}-{family(index_type)}-{rng.randrange(10**9)}"
    shutil.copytree(reference_dir, path)
    ids = sorted(texts)
    start_type = index_type if operation != "reindex" else ("HNSW32" if index_type == "Flat" else "Flat")
    with Index.open(path, model=embedder) as index:
        if operation == "ingest":
            index.delete(ids[-INGESTED:])
        if start_type != "Flat":
            index.reindex(start_type)
    run = KillRun(operation, index_type, round(rng.uniform(0, KILL_WINDOW[operation]), 3))
    if operation == "ingest":
        args = ["index", corpus_file, "--index", path, "--batch-chars", BATCH_CHARS, "--quiet"]
        return KillPlan(run, path, args, start_type, ids[:-INGESTED], [], ids[-INGESTED:], reference)
    if operation == "delete":
        doomed = sorted(rng.sample(ids, DELETED))
        return KillPlan(run, path, ["delete", *doomed, "--index", path], start_type,
                        sorted(set(ids) - set(doomed)), [], doomed, reference)
    return KillPlan(run, path, ["reindex", "--index", path, "--index-type", index_type], start_type, ids, [], [],
                    reference)


def launch_and_kill(plan: KillPlan) -> None:
    """Start the command, wait until it is at work, let ``delay`` pass, SIGKILL it."""
    store = plan.path / "store.sqlite"
    before = count_documents(plan.path)
    process = subprocess.Popen(cli(*plan.args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=cli_environment(), cwd=PACKAGE_ROOT)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    if plan.run.operation == "ingest":  # at work once its first batch is committed
        started = lambda: count_documents(plan.path) > before  # noqa: E731
    else:  # at work once it has opened the store (after loading its model)
        started = lambda: store_opened(process.pid, store)  # noqa: E731
    while process.poll() is None and not started() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(plan.run.delay)
    plan.run.killed = process.poll() is None
    plan.run.documents_at_kill = count_documents(plan.path)
    if plan.run.killed:
        process.kill()
    _, stderr = process.communicate(timeout=60)
    plan.run.returncode = process.returncode
    if not plan.run.killed and process.returncode != 0:
        plan.run.problems.append(f"command failed before the kill: exit {process.returncode}: {stderr.strip()[-500:]}")


def rerun(plan: KillPlan, embedder: Any, texts: dict[str, str], use_cli: bool) -> list[str]:
    """Run the killed command again: it must complete and say what it did."""
    problems = []
    present = set(read_store(plan.path).documents)
    operation, targets = plan.run.operation, plan.targets
    # An ingest run again adds what is missing, embeds nothing that is there, and reports the rest as
    # present (unchanged, or updated when only where it was read from changed: nothing is re-embedded).
    missing = sorted(set(targets) - present)
    expected = (len(missing), len(present), 0, sum(len(plan.reference.spans[d]) for d in missing))
    expected_words = "{} added, {} present, {} failed, {} chunks embedded".format(*expected)
    if use_cli:
        result = run_cli(*plan.args)
        out = result.stdout + result.stderr
        if operation == "ingest":
            said = re.search(r"(\d+) added, (\d+) updated, (\d+) unchanged\b.* (\d+) failed; (\d+) chunks embedded", out)
            got = tuple(map(int, said.groups())) if said else None
            if result.returncode != 0 or got is None or (got[0], got[1] + got[2], got[3], got[4]) != expected:
                problems.append(f"rerun: exit {result.returncode}, expected {expected_words}: {out.strip()[-500:]}")
        elif operation == "delete":
            gone = sorted(set(targets) - present)
            expected_code = 1 if gone else 0
            if result.returncode != expected_code or f"deleted {len(targets) - len(gone)} documents" not in out:
                problems.append(f"rerun: exit {result.returncode} (expected {expected_code}): {out.strip()[-500:]}")
        elif result.returncode != 0 or "rebuilt" not in out:
            problems.append(f"rerun: exit {result.returncode}: {out.strip()[-500:]}")
        return problems
    try:
        with Index.open(plan.path, model=embedder) as index:
            if operation == "ingest":
                report = index.add(as_documents(texts))
                got = (report.added, report.updated + report.unchanged, len(report.failed), report.chunks_added)
                if got != expected:
                    problems.append(f"rerun: {got}, expected {expected_words}")
            elif operation == "delete":
                report = index.delete(targets)
                if sorted(report.deleted) != sorted(set(targets) & present):
                    problems.append(f"rerun deleted {len(report.deleted)}, expected {len(set(targets) & present)}")
            else:
                count = index.reindex(plan.run.index_type)
                if count != index.info()["counts"]["chunks"]:
                    problems.append(f"rerun: reindex holds {count} vectors")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"rerun failed: {type(exc).__name__}: {exc}")
    return problems


def kill_round(
    workdir: Path, reference_dir: Path, reference: StoreState, texts: dict[str, str], operation: str,
    index_types: Sequence[str], embedder: Any, rng: random.Random, *, rerun_with_cli: bool = False,
) -> list[KillRun]:
    """One killed ``operation`` per index type, the processes running side by side; then check and rerun each."""
    corpus_file = write_jsonl(workdir / "corpus.jsonl", texts)
    plans = [plan_kill(workdir, reference_dir, reference, texts, operation, t, embedder, rng, corpus_file)
             for t in index_types]
    with ThreadPoolExecutor(len(plans)) as pool:
        list(pool.map(launch_and_kill, plans))
    for plan in plans:
        plan.run.problems += map(str, check_index(
            plan.path, embedder, reference, index_types=[plan.start_type, plan.run.index_type],
            must_have=plan.must_have, must_lack=plan.must_lack, focus=plan.targets, rng=rng))
    if rerun_with_cli:  # the reruns are processes too: overlap them
        with ThreadPoolExecutor(len(plans)) as pool:
            reruns = list(pool.map(lambda plan: rerun(plan, embedder, texts, True), plans))
    else:
        reruns = [rerun(plan, embedder, texts, False) for plan in plans]
    for plan, problems in zip(plans, reruns):
        plan.run.rerun_problems += problems
        final_lack = plan.targets if operation == "delete" else []
        final_have = sorted(set(texts) - set(final_lack))
        plan.run.rerun_problems += map(str, check_index(
            plan.path, embedder, reference, index_types=[plan.run.index_type], must_have=final_have,
            must_lack=final_lack, focus=plan.targets, rng=rng))
        shutil.rmtree(plan.path, ignore_errors=True)
    return [plan.run for plan in plans]


# 2. Concurrent readers and one writer

WRITER_IDS = tuple(f"live-{i:02d}" for i in range(12))

READER = r"""
import json, os, random, sys, time, traceback
config = json.loads(open(sys.argv[1]).read())
from searchkit import Index, load_embedder
index = Index.open(config["index"], model=load_embedder())
rng = random.Random(config["seed"])
out = open(config["out"], "w")

def search(kind, target, query, where):
    started = time.monotonic()
    try:
        hits = [[h.doc_id, h.text, h.metadata.get("version")] for h in index.search(query, k=config["k"], where=where)]
        error = None
    except Exception:
        hits, error = [], traceback.format_exc()
    out.write(json.dumps({"kind": kind, "target": target, "t0": started, "t1": time.monotonic(),
                          "hits": hits, "error": error}) + "\n")
    out.flush()

index.search("warm up", k=1)  # the model loads on first use: ready once it has
open(config["ready"], "w").close()
while not os.path.exists(config["stop"]):
    if rng.random() < 0.7:  # one writer document, by its unique marker
        target = rng.choice(config["writer_ids"])
        search("marker", target, target, {"marker": target})
    else:  # a document that never changes, by its text
        target, text = rng.choice(config["static"])
        search("static", target, text, None)
for target in config["writer_ids"]:  # after the writer finished: each must show its final state
    search("final", target, target, {"marker": target})
out.close()
"""


def writer_document(doc_id: str, version: int) -> Document:
    text = f"{doc_id} version {version}. {sentences(random.Random(f'{doc_id}/{version}'), 25)}"
    return Document(doc_id, text, metadata={"marker": doc_id, "version": version})


@dataclass(frozen=True)
class Event:
    """One committed write of a writer document: its version (-1 for a delete) and when the call ran."""

    version: int
    t0: float
    t1: float


@dataclass
class ConcurrencyOutcome:
    readers: int
    seconds: float
    writes: int = 0
    writer_errors: list[str] = field(default_factory=list)
    searches: int = 0
    final_searches: int = 0
    reader_errors: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)  # a superseded or deleted version, or a committed one missed
    inconsistent_reads: list[str] = field(default_factory=list)  # text or id that was never written so
    wrong_first: list[str] = field(default_factory=list)  # an unchanging document's own text not first
    stale_final: list[str] = field(default_factory=list)  # after the writer finished, not its final state

    def figures(self) -> dict[str, Any]:
        return {key: len(value) if isinstance(value, list) else value for key, value in asdict(self).items()}


def run_writer(
    index: Index, seconds: float, rng: random.Random, outcome: ConcurrencyOutcome, min_writes: int = 10
) -> dict[str, list[Event]]:
    """Add new versions of and delete writer documents for ``seconds``, one call at a time.

    On a starved machine it goes on past ``seconds`` (up to four times as long) until it
    has written ``min_writes`` times, so there is always something for the readers to see.
    """
    timeline = {doc_id: [Event(0, float("-inf"), float("-inf"))] for doc_id in WRITER_IDS}
    next_version = dict.fromkeys(WRITER_IDS, 1)
    begun = time.monotonic()
    while (now := time.monotonic()) < begun + seconds or (outcome.writes < min_writes and now < begun + 4 * seconds):
        doc_id = rng.choice(WRITER_IDS)
        live = timeline[doc_id][-1].version >= 0
        started = time.monotonic()
        try:
            if live and rng.random() < 0.5:
                index.delete([doc_id])
                version = -1
            else:
                version = next_version[doc_id]
                next_version[doc_id] += 1
                index.add([writer_document(doc_id, version)])
        except Exception as exc:  # noqa: BLE001 - counted and reported
            outcome.writer_errors.append(f"{type(exc).__name__}: {exc}")
            continue
        timeline[doc_id].append(Event(version, started, time.monotonic()))
        outcome.writes += 1
    return timeline


def judge_writer_hits(
    record: dict[str, Any], doc_id: str, hits: list[list[Any]], timeline: list[Event], outcome: ConcurrencyOutcome
) -> None:
    """Each hit of a writer document must show a version live at some moment of the search."""
    s0, s1 = record["t0"], record["t1"]
    for _, text, version in hits:
        positions = [i for i, e in enumerate(timeline) if e.version == version]
        if not positions or text not in writer_document(doc_id, version).text:
            outcome.inconsistent_reads.append(f"{doc_id} version {version}: text {text[:60]!r} was never written so")
            continue
        i = positions[0]
        superseded = timeline[i + 1].t1 if i + 1 < len(timeline) else float("inf")
        if superseded < s0:
            outcome.stale_reads.append(f"{doc_id} version {version} found {s0 - superseded:.3f} s after it was replaced")
        elif timeline[i].t0 > s1:
            outcome.inconsistent_reads.append(f"{doc_id} version {version} found before it was written")


def judge(record: dict[str, Any], timelines: dict[str, list[Event]], reference: StoreState,
          outcome: ConcurrencyOutcome) -> None:
    kind, target, hits = record["kind"], record["target"], record["hits"]
    if record["error"]:
        outcome.reader_errors.append(record["error"].strip().splitlines()[-1])
        return
    if kind == "static":
        if not hits or hits[0][0] != target:
            outcome.wrong_first.append(f"{target}'s text found {[h[0] for h in hits]}")
        for hit in hits:
            if hit[0] in timelines:
                judge_writer_hits(record, hit[0], [hit], timelines[hit[0]], outcome)
            elif hit[1] not in reference.documents.get(hit[0], ""):
                outcome.inconsistent_reads.append(f"{hit[0]}: text {hit[1][:60]!r} is not in the document")
        return
    before = len(outcome.stale_reads) + len(outcome.inconsistent_reads)
    if any(hit[0] != target for hit in hits):
        outcome.inconsistent_reads.append(f"search restricted to {target} returned {[h[0] for h in hits]}")
    timeline = timelines[target]
    judge_writer_hits(record, target, [h for h in hits if h[0] == target], timeline, outcome)
    # The state committed before the search began, if no write was under way while it ran.
    settled = [e for e in timeline if e.t1 < record["t0"]]
    running = any(e.t0 <= record["t1"] and e.t1 >= record["t0"] for e in timeline)
    if settled and not running and settled[-1].version >= 0 and not hits:
        outcome.stale_reads.append(f"{target} version {settled[-1].version}, committed before the search, not found")
    if kind == "final" and len(outcome.stale_reads) + len(outcome.inconsistent_reads) > before:
        outcome.stale_final.append(f"{target}: {(outcome.stale_reads + outcome.inconsistent_reads)[-1]}")


def readers_and_writer(
    workdir: Path, reference_dir: Path, reference: StoreState, embedder: Any, *, readers: int, seconds: float,
    seed: int = 0,
) -> ConcurrencyOutcome:
    """``readers`` processes search while this process adds and deletes documents for ``seconds``."""
    outcome = ConcurrencyOutcome(readers, seconds)
    path = workdir / "concurrent"
    shutil.copytree(reference_dir, path)
    rng = random.Random(seed)
    static = rng.sample(sorted(reference.documents.items()), 20)
    stop = workdir / "stop"
    with Index.open(path, model=embedder) as index:
        index.add([writer_document(doc_id, 0) for doc_id in WRITER_IDS])
        processes = []
        for n in range(readers):
            config = {"index": str(path), "out": str(workdir / f"reader-{n}.jsonl"), "stop": str(stop),
                      "ready": str(workdir / f"ready-{n}"), "seed": seed * 1000 + n, "k": 5,
                      "writer_ids": list(WRITER_IDS), "static": static}
            (workdir / f"reader-{n}.json").write_text(json.dumps(config))
            with (workdir / f"reader-{n}.err").open("w") as err:
                processes.append(subprocess.Popen(
                    [sys.executable, "-c", READER, str(workdir / f"reader-{n}.json")], stdout=subprocess.DEVNULL,
                    stderr=err, env=cli_environment(), cwd=PACKAGE_ROOT))
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT
        while not all((workdir / f"ready-{n}").exists() or p.poll() is not None for n, p in enumerate(processes)):
            assert time.monotonic() < deadline, "readers did not start"
            time.sleep(0.05)
        timelines = run_writer(index, seconds, rng, outcome)
        stop.touch()
        for process in processes:
            process.wait(timeout=SUBPROCESS_TIMEOUT)
    for n, process in enumerate(processes):
        if process.returncode != 0:
            error = (workdir / f"reader-{n}.err").read_text().strip().splitlines()
            outcome.reader_errors.append(f"reader {n} exited {process.returncode}: {error[-1] if error else ''}")
        out = workdir / f"reader-{n}.jsonl"
        for line in out.read_text().splitlines() if out.exists() else []:
            record = json.loads(line)
            outcome.searches += 1
            outcome.final_searches += record["kind"] == "final"
            judge(record, timelines, reference, outcome)
    shutil.rmtree(path, ignore_errors=True)
    return outcome


# 3. Damaged files

DERIVABLE = (
    ("vectors.faiss", "truncated"), ("vectors.faiss", "garbage"), ("vectors.faiss", "missing"),
    ("vectors.json", "truncated"), ("vectors.json", "garbage"),
)
UNDERIVABLE = (
    ("manifest.json", "truncated"), ("manifest.json", "garbage"),
    ("store.sqlite", "truncated"), ("store.sqlite", "header"),
)
# What a one-line error should tell the user to do.
ADVICE = ("rebuild", "restore", "recreate", "re-create", "reindex", "re-index", "delete", "remove", "backup", "run ")


def damage(path: Path, name: str, how: str, rng: random.Random) -> None:
    target = path / name
    size = target.stat().st_size
    if how == "truncated":
        os.truncate(target, size // 2)
    elif how == "garbage":
        target.write_bytes(rng.randbytes(size))
    elif how == "header":  # SQLite's 100-byte header
        with target.open("r+b") as handle:
            handle.write(rng.randbytes(100))
    elif how == "missing":
        target.unlink()
    else:
        raise ValueError(how)


@contextmanager
def messages_said() -> Iterator[list[str]]:
    """Warnings and searchkit log records (INFO and up) emitted inside the block."""
    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(f"log {record.levelname}: {record.getMessage()}")

    handler, logger = Collect(logging.INFO), logging.getLogger("searchkit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield said
        said.extend(f"warning: {w.message}" for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def top_hits(path: Path, embedder: Any, queries: Sequence[str]) -> list[list[tuple[str, int]]]:
    with Index.open(path, model=embedder) as index:
        return [[(h.doc_id, h.chunk_id) for h in index.search(q, k=5)] for q in queries]


def copy_of(reference_dir: Path, path: Path, embedder: Any, index_type: str = "Flat") -> Path:
    shutil.copytree(reference_dir, path)
    if index_type != "Flat":
        with Index.open(path, model=embedder) as index:
            index.reindex(index_type)
    return path


def recover_derivable(
    workdir: Path, reference_dir: Path, reference: StoreState, embedder: Any, name: str, how: str,
    index_type: str = "Flat", seed: int = 0,
) -> dict[str, Any]:
    """Damage a vector file; the index must rebuild it from the store, answer as before, and say so."""
    rng = random.Random(seed)
    path = copy_of(reference_dir, workdir / f"{name}-{how}-{family(index_type)}", embedder, index_type)
    queries = [reference.documents[d] for d in rng.sample(sorted(reference.documents), 5)]
    before = top_hits(path, embedder, queries)
    damage(path, name, how, rng)
    outcome: dict[str, Any] = {"case": f"{name} {how}", "index_type": index_type}
    with messages_said() as said:
        try:
            with Index.open(path, model=embedder) as index:
                after = [[(h.doc_id, h.chunk_id) for h in index.search(q, k=5)] for q in queries]
                info = index.info()
        except Exception as exc:  # noqa: BLE001 - the finding
            outcome.update(opened=False, error=f"{type(exc).__name__}: {exc}")
            return outcome
    counts = info["counts"]
    in_info = [word for word in ("recover", "rebuil", "repair") if word in json.dumps(info).lower()]
    outcome.update(
        opened=True,
        same_hits=after == before,
        counts_agree=counts["vectors"] == counts["chunks"] == reference.chunks,
        said=said + [f"info mentions {word}" for word in in_info],
    )
    if not outcome["same_hits"]:
        outcome["hits"] = {"before": before[:2], "after": after[:2]}
    shutil.rmtree(path, ignore_errors=True)
    return outcome


def refuse_underivable(
    workdir: Path, reference_dir: Path, reference: StoreState, embedder: Any, name: str, how: str, seed: int = 0
) -> tuple[dict[str, Any], Path]:
    """Damage what cannot be rebuilt; the library must raise a SearchkitError, never answer."""
    rng = random.Random(seed)
    path = copy_of(reference_dir, workdir / f"{name}-{how}", embedder)
    assert not (path / "store.sqlite-wal").exists() or (path / "store.sqlite-wal").stat().st_size == 0
    damage(path, name, how, rng)
    query = reference.documents[sorted(reference.documents)[0]]
    outcome: dict[str, Any] = {"case": f"{name} {how}"}
    try:
        with Index.open(path, model=embedder) as index:
            hits = index.search(query, k=3)
        outcome.update(library="answered", detail=f"{len(hits)} hits, no error")
    except SearchkitError as exc:
        message = str(exc)
        outcome.update(library="refused", detail=f"{type(exc).__name__}: {message}",
                       one_line="\n" not in message.strip(), names_file=name in message,
                       advice=any(word in message.lower() for word in ADVICE))
    except Exception as exc:  # noqa: BLE001 - the finding: not a SearchkitError
        outcome.update(library="crashed", detail=f"{type(exc).__name__}: {exc}")
    return outcome, path


def judge_refusal(outcome: dict[str, Any], result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """What is wrong with how a damaged, underivable file was reported."""
    problems = []
    if outcome["library"] != "refused":
        problems.append(f"library {outcome['library']}: {outcome['detail']}")
    elif not (outcome["one_line"] and outcome["names_file"] and outcome["advice"]):
        problems.append(f"library message should be one line naming {name} and what to do: {outcome['detail']}")
    outcome["cli"] = {"returncode": result.returncode, "stdout": result.stdout.strip()[:300],
                      "stderr": result.stderr.strip()[-600:]}
    if not is_one_line_error(result):
        problems.append(f"CLI exit {result.returncode}, stderr {result.stderr.strip()[-600:]!r}, "
                        f"stdout {result.stdout.strip()[:200]!r}")
    elif not any(word in result.stderr.lower() for word in ADVICE):
        problems.append(f"CLI message does not say what to do: {result.stderr.strip()}")
    return problems


# 4. Disk full


def fill_disk(
    workdir: Path, reference_dir: Path, reference: StoreState, texts: dict[str, str], embedder: Any,
    limit_bytes: int = 200_000,
) -> dict[str, Any]:
    """Ingest with files capped at ``limit_bytes`` (RLIMIT_FSIZE, so writes fail with EFBIG as on a full disk)."""
    path = copy_of(reference_dir, workdir / "disk-full", embedder)
    ids = sorted(texts)
    with Index.open(path, model=embedder) as index:
        index.delete(ids[-INGESTED:])
    corpus_file = write_jsonl(workdir / "corpus.jsonl", texts)

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    result = run_cli("index", corpus_file, "--index", path, "--batch-chars", BATCH_CHARS, "--quiet",
                     preexec_fn=limited)
    outcome: dict[str, Any] = {
        "limit_bytes": limit_bytes, "returncode": result.returncode, "stderr": result.stderr.strip()[-800:],
        "one_line_error": is_one_line_error(result),
        "says_disk": any(w in result.stderr.lower() for w in ("disk", "space", "file size", "too large", "full")),
    }
    outcome["problems"] = [str(p) for p in check_index(
        path, embedder, reference, index_types=["Flat"], must_have=ids[:-INGESTED])]
    with Index.open(path, model=embedder) as index:
        report = index.add(as_documents(texts))
    outcome["rerun"] = {"added": report.added, "unchanged": report.unchanged, "failed": len(report.failed)}
    outcome["problems"] += [f"after rerun: {p}" for p in check_index(
        path, embedder, reference, index_types=["Flat"], must_have=ids)]
    shutil.rmtree(path, ignore_errors=True)
    return outcome


# 5. HNSW deletes seen by a new process


def hnsw_delete_across_processes(
    workdir: Path, reference_dir: Path, reference: StoreState, embedder: Any, victim: str
) -> dict[str, Any]:
    """Delete one document of an HNSW32 index here, then search and count in new processes."""
    path = copy_of(reference_dir, workdir / "hnsw-delete", embedder, "HNSW32")
    with Index.open(path, model=embedder) as index:
        assert index.search(reference.documents[victim], k=1)[0].doc_id == victim
        index.delete([victim])
    search, info = run_cli_all(
        ("search", reference.documents[victim], "--index", path, "-k", 2, "--json"),
        ("info", "--index", path, "--json"),
    )
    outcome: dict[str, Any] = {"search_returncode": search.returncode, "info_returncode": info.returncode,
                               "stderr": (search.stderr + info.stderr).strip()[-800:]}
    if search.returncode == 0:
        outcome["hits"] = [h["doc_id"] for h in json.loads(search.stdout)]
    if info.returncode == 0:
        outcome["counts"] = json.loads(info.stdout)["counts"]
    shutil.rmtree(path, ignore_errors=True)
    return outcome


# The tests


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return corpus()


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory, texts: dict[str, str], embedder: Any) -> Path:
    path = tmp_path_factory.mktemp("reliability") / "reference"
    build_reference(path, texts, embedder)
    return path


@pytest.fixture(scope="module")
def reference(reference_dir: Path) -> StoreState:
    return read_store(reference_dir)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="watches /proc to kill mid-operation")
@pytest.mark.parametrize("operation", OPERATIONS)
def test_sigkill_leaves_whole_documents_and_the_rerun_completes(
    operation: str, tmp_path: Path, reference_dir: Path, reference: StoreState, texts: dict[str, str], embedder: Any
) -> None:
    """One SIGKILL of `searchkit index|delete|reindex` per index type at a seeded random moment of its work."""
    runs = kill_round(tmp_path, reference_dir, reference, texts, operation, INDEX_TYPES, embedder,
                      random.Random(f"kill-{operation}"))
    failures = [f"{r.operation} on {r.index_type} ({'killed' if r.killed else 'finished'} {r.delay} s in, "
                f"{r.documents_at_kill} documents): {p}" for r in runs for p in r.problems + r.rerun_problems]
    assert not failures, "\n".join(failures)
    assert all(r.returncode == -signal.SIGKILL or r.returncode == 0 for r in runs)
    if operation == "ingest":  # the kill lands after the first batch, long before forty documents are in
        assert any(r.killed for r in runs), [asdict(r) for r in runs]


def test_readers_see_committed_state_while_a_writer_adds_and_deletes(
    tmp_path: Path, reference_dir: Path, reference: StoreState, embedder: Any
) -> None:
    outcome = readers_and_writer(tmp_path, reference_dir, reference, embedder, readers=3, seconds=10)
    figures = outcome.figures()
    assert not outcome.writer_errors and outcome.writes >= 10, figures
    assert outcome.searches - outcome.final_searches >= 3 * 5, figures
    assert not outcome.reader_errors, outcome.reader_errors[:5]
    assert not outcome.inconsistent_reads, outcome.inconsistent_reads[:5]
    assert not outcome.wrong_first, outcome.wrong_first[:5]
    assert not outcome.stale_reads, outcome.stale_reads[:5]
    assert outcome.final_searches == 3 * len(WRITER_IDS) and not outcome.stale_final, figures


@pytest.mark.parametrize(("name", "how"), DERIVABLE)
def test_damaged_vector_file_is_rebuilt_from_the_store_and_said(
    name: str, how: str, tmp_path: Path, reference_dir: Path, reference: StoreState, embedder: Any
) -> None:
    outcome = recover_derivable(tmp_path, reference_dir, reference, embedder, name, how)
    assert outcome["opened"], outcome
    assert outcome["same_hits"] and outcome["counts_agree"], outcome
    assert outcome["said"], f"the index rebuilt {name} ({how}) without saying so: no warning, log or info field"


def test_damaged_vectors_on_the_command_line_answer_and_say_so(
    tmp_path: Path, reference_dir: Path, reference: StoreState, embedder: Any
) -> None:
    path = copy_of(reference_dir, tmp_path / "garbage-vectors", embedder, "HNSW32")
    damage(path, "vectors.faiss", "garbage", random.Random(1))
    target = sorted(reference.documents)[5]
    result = run_cli("search", reference.documents[target], "--index", path, "-k", 3, "--json")
    assert result.returncode == 0, result.stderr
    assert [h["doc_id"] for h in json.loads(result.stdout)][0] == target
    assert "vector" in result.stderr.lower(), f"the rebuild was not said on stderr: {result.stderr!r}"


def test_underivable_damage_is_refused_with_a_one_line_error(
    tmp_path: Path, reference_dir: Path, reference: StoreState, embedder: Any
) -> None:
    """A damaged manifest or store: SearchkitError in the library, exit 2 and one line on the command line."""
    cases = [refuse_underivable(tmp_path, reference_dir, reference, embedder, name, how) for name, how in UNDERIVABLE]
    query = reference.documents[sorted(reference.documents)[0]]
    results = run_cli_all(*[("search", query, "--index", path) for _, path in cases])
    failures = [f"{outcome['case']}: {problem}" for (outcome, _), result, (name, _) in zip(cases, results, UNDERIVABLE)
                for problem in judge_refusal(outcome, result, name)]
    assert not failures, "\n".join(failures)


def test_disk_full_during_ingest_is_a_clear_error_and_keeps_what_was_committed(
    tmp_path: Path, reference_dir: Path, reference: StoreState, texts: dict[str, str], embedder: Any
) -> None:
    outcome = fill_disk(tmp_path, reference_dir, reference, texts, embedder)
    assert not outcome["problems"], outcome
    assert outcome["rerun"]["failed"] == 0
    assert outcome["returncode"] == 2 and outcome["one_line_error"] and outcome["says_disk"], outcome


def test_hnsw_delete_holds_in_a_new_process(
    tmp_path: Path, reference_dir: Path, reference: StoreState, embedder: Any
) -> None:
    victim = sorted(reference.documents)[3]
    outcome = hnsw_delete_across_processes(tmp_path, reference_dir, reference, embedder, victim)
    assert outcome["search_returncode"] == 0 and outcome["info_returncode"] == 0, outcome
    assert len(outcome["hits"]) == 2 and victim not in outcome["hits"], outcome
    counts = outcome["counts"]
    assert counts["vectors"] == counts["chunks"] == reference.chunks - len(reference.spans[victim]), outcome
