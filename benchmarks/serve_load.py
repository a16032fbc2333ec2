"""searchkit serve under load: throughput, latency and errors, and the HTTP overhead over in-process search.

Run from the repository root (about 2 minutes):

    .venv/bin/python benchmarks/serve_load.py [--clients 16 --seconds 60] [--corpus corpora/demo]

A real server (`searchkit serve --allow-writes --api-key ...`, a separate process on 127.0.0.1 only) serves an
index of ``--corpus`` (BEIR layout; built under benchmarks/work/ the first time).

1. Overhead, side by side: every query of the corpus in three kinds (dense, hybrid, dense with a filter), one
   at a time, alternately in this process through ``Index.search`` and over HTTP through the server, for
   ``--rounds`` rounds; the medians of the rounds' p50 and p99 are reported. Each HTTP response also carries
   the server's own search time (``took_ms``), so the overhead is given two ways: HTTP p50 minus in-process p50,
   and the median per-request difference between what the client waited and what the search took.
2. Load: ``--clients`` concurrent clients (asyncio + httpx, keep-alive) send the same mix for ``--seconds``
   while a writer adds a new document every ``--write-every`` seconds through ``POST /documents``. Reported:
   requests per second (overall and the median of per-second counts), latency p50/p90/p99, errors by kind, the
   writer's latencies and failures, and whether every written document is searchable at the end.

Results go to benchmarks/results/serve_load.json and .md. The machine is shared and noisy (2 cores, and the load
generator runs on the same cores as the server): read the medians, and compare figures within one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per encode, in this process (the in-process side) as in the server (`serve --model-threads 1`).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from searchkit import Index, Sources, load_embedder  # noqa: E402
from searchkit.server import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "serve_load"
KEY = "serve-load-benchmark"
KINDS = ("dense", "hybrid", "filtered")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def search_args(query: str, kind: str, where: list[str]) -> dict[str, Any]:
    """The request of one kind, as keyword arguments of Index.search and as a POST /search body."""
    return {"query": query, "k": 10, "mode": "hybrid" if kind == "hybrid" else "dense",
            "where": where if kind == "filtered" else None}


def start_server(index_path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(ROOT / ".venv" / "bin" / "searchkit"), "serve", "--index", str(index_path), "--host", "127.0.0.1",
        "--port", str(port), "--allow-writes", "--api-key", KEY, "--no-access-log",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start within 120 s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used: unlike wall time, not inflated by waiting for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overhead(index: Index, url: str, queries: list[str], where: list[str], rounds: int, server_pid: int) -> dict[str, Any]:
    """In-process and HTTP latency of the same requests, alternating by round; medians over rounds.

    CPU time is measured beside wall time: on a shared machine a request can wait for a core at every hand-off
    between threads and processes, which wall time counts and CPU time does not.
    """
    cpu: dict[str, list[float]] = {"in_process_ms": [], "server_ms": []}
    per_round: dict[str, list[dict[str, float]]] = {
        "in_process": [], "http": [], "client_minus_server": [], "asgi_minus_server": [], "health_round_trip": [],
    }
    app = create_app(index)
    with httpx.Client(base_url=url, timeout=60) as http:
        for query in queries[:3]:  # warm both paths
            index.search(query, 10)
            http.post("/search", json=search_args(query, "dense", where))
        for _ in range(rounds):
            local: list[float] = []
            remote: list[float] = []
            gap: list[float] = []
            local_cpu = 0.0
            server_before = cpu_seconds(server_pid)
            for query in queries:
                for kind in KINDS:
                    args = search_args(query, kind, where)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    index.search(args["query"], args["k"], mode=args["mode"], where=args["where"])
                    local.append((time.perf_counter() - started) * 1000)
                    local_cpu += time.process_time() - cpu_started
                    started = time.perf_counter()
                    response = http.post("/search", json=args)
                    waited = (time.perf_counter() - started) * 1000
                    response.raise_for_status()
                    remote.append(waited)
                    gap.append(waited - response.json()["took_ms"])
            cpu["server_ms"].append((cpu_seconds(server_pid) - server_before) * 1000 / len(remote))
            cpu["in_process_ms"].append(local_cpu * 1000 / len(local))
            framework = asyncio.run(asgi_gaps(app, queries, where))
            health: list[float] = []
            for _ in queries:
                started = time.perf_counter()
                http.get("/health").raise_for_status()
                health.append((time.perf_counter() - started) * 1000)
            for name, values in (("in_process", local), ("http", remote), ("client_minus_server", gap),
                                 ("asgi_minus_server", framework), ("health_round_trip", health)):
                per_round[name].append({"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)})
    summary: dict[str, Any] = {name: {stat: statistics.median(r[stat] for r in rounds_) for stat in ("p50", "p99")}
                               for name, rounds_ in per_round.items()}
    summary["overhead_p50_ms"] = summary["http"]["p50"] - summary["in_process"]["p50"]
    summary["cpu_ms_per_request"] = {name: statistics.median(values) for name, values in cpu.items()}
    summary["cpu_ms_per_request"]["overhead"] = summary["cpu_ms_per_request"]["server_ms"] - summary["cpu_ms_per_request"]["in_process_ms"]
    return {"rounds": per_round, "cpu_rounds": cpu, "median_of_rounds": summary}


async def asgi_gaps(app: Any, queries: list[str], where: list[str]) -> list[float]:
    """The app called in this process without a socket: what the framework (parsing, validation, the thread
    pool, snippets, JSON) adds to the search itself."""
    gaps = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://in-process") as http:
        for query in queries:
            for kind in KINDS:
                started = time.perf_counter()
                response = await http.post("/search", json=search_args(query, kind, where))
                gaps.append((time.perf_counter() - started) * 1000 - response.json()["took_ms"])
    return gaps


async def load(url: str, queries: list[str], where: list[str], clients: int, seconds: float, write_every: float) -> dict[str, Any]:
    rng = random.Random(7)
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: Counter[str] = Counter()
    finished_at: list[float] = []
    written: list[str] = []
    write_latencies: list[float] = []
    write_errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        start = time.perf_counter()
        stop = start + seconds

        async def client(number: int) -> None:
            turn = number
            while time.perf_counter() < stop:
                kind = KINDS[turn % len(KINDS)]
                turn += 1
                args = search_args(rng.choice(queries), kind, where)
                began = time.perf_counter()
                try:
                    response = await http.post("/search", json=args)
                    ok = response.status_code == 200 and len(response.json()["hits"]) > 0
                    if not ok:
                        errors[f"{response.status_code} {response.text[:120]}"] += 1
                except httpx.HTTPError as exc:
                    ok = False
                    errors[type(exc).__name__] += 1
                ended = time.perf_counter()
                if ok:
                    latencies[kind].append((ended - began) * 1000)
                    finished_at.append(ended - start)

        async def writer() -> None:
            n = 0
            while time.perf_counter() < stop:
                doc_id = f"load-{n}"
                document = {"id": doc_id, "title": f"Load note {n}", "topic": "load", "year": 2026,
                            "text": f"Note {n} written during the load test about harbour cranes and container ships."}
                began = time.perf_counter()
                try:
                    response = await http.post("/documents", json={"documents": [document]}, headers={"Authorization": f"Bearer {KEY}"})
                    if response.status_code == 200 and response.json()["added"] + response.json()["updated"] + response.json()["unchanged"] == 1:
                        written.append(doc_id)
                        write_latencies.append((time.perf_counter() - began) * 1000)
                    else:
                        write_errors[f"{response.status_code} {response.text[:120]}"] += 1
                except httpx.HTTPError as exc:
                    write_errors[type(exc).__name__] += 1
                n += 1
                await asyncio.sleep(write_every)

        await asyncio.gather(writer(), *(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
        missing = []
        for doc_id in written:
            found = await http.post("/search", json={"query": "harbour cranes container ships", "k": 100,
                                                     "where": {"doc_id": doc_id}, "mode": "lexical"})
            if found.status_code != 200 or [h["doc_id"] for h in found.json()["hits"]] != [doc_id]:
                missing.append(doc_id)
        await http.post("/documents/delete", json={"ids": written}, headers={"Authorization": f"Bearer {KEY}"})
    every = [value for values in latencies.values() for value in values]
    per_second = Counter(int(t) for t in finished_at if t < int(elapsed))
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(every),
        "qps": len(every) / elapsed,
        "qps_median_per_second": statistics.median(per_second.values()) if per_second else 0.0,
        "latency_ms": {"p50": percentile(every, 50), "p90": percentile(every, 90), "p99": percentile(every, 99),
                       "max": max(every) if every else float("nan")},
        "latency_ms_by_kind": {kind: {"n": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99)} for kind, v in latencies.items()},
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "writer": {"documents_written": len(written), "p50_ms": percentile(write_latencies, 50),
                   "p99_ms": percentile(write_latencies, 99), "errors": dict(write_errors),
                   "not_searchable_after": missing},
    }


def markdown(result: dict[str, Any]) -> str:
    over = result["overhead"]["median_of_rounds"]
    load_ = result["load"]
    lines = [
        f"# searchkit serve under load ({result['machine']['cpus']} CPUs)",
        "",
        f"Produced by `{result['command']}`. Corpus: {result['corpus']['path']} ({result['corpus']['documents']} documents, "
        f"{result['corpus']['chunks']} chunks, {result['corpus']['queries']} queries); k=10; the mix is dense, hybrid and "
        f"dense filtered by `{' and '.join(result['filter'])}`, in turn. The server is `searchkit serve` in its own process "
        "on 127.0.0.1 (no access log, one thread per encode, as in this process); the load generator runs on the same cores.",
        "",
        f"## HTTP overhead over in-process search (one request at a time, median of {result['rounds']} alternating rounds)",
        "",
        "| path | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| in process: `Index.search` | {over['in_process']['p50']:.2f} | {over['in_process']['p99']:.2f} |",
        f"| over HTTP: `POST /search` (client-observed) | {over['http']['p50']:.2f} | {over['http']['p99']:.2f} |",
        f"| per request: client-observed minus the server's own search time | {over['client_minus_server']['p50']:.2f} | {over['client_minus_server']['p99']:.2f} |",
        f"| per request, the app called in process without a socket (framework, snippets, JSON) minus the search time | {over['asgi_minus_server']['p50']:.2f} | {over['asgi_minus_server']['p99']:.2f} |",
        f"| `GET /health` round trip (the floor of any request from this client to this server) | {over['health_round_trip']['p50']:.2f} | {over['health_round_trip']['p99']:.2f} |",
        "",
        f"HTTP p50 minus in-process p50: **{over['overhead_p50_ms']:.2f} ms** (goal: at most 2 ms).",
        "",
        f"CPU time per request (median of rounds): in process {over['cpu_ms_per_request']['in_process_ms']:.2f} ms, the server "
        f"process (every thread) {over['cpu_ms_per_request']['server_ms']:.2f} ms: HTTP costs "
        f"**{over['cpu_ms_per_request']['overhead']:.2f} ms of CPU** a request. The rest of the wall-time difference is "
        f"waiting for a core at each hand-off (client, event loop, worker thread, back); the machine's load average "
        f"was {result['machine']['load_average'][0]:.1f} on {result['machine']['cpus']} CPUs when the run ended.",
        "",
        f"## {load_['clients']} concurrent clients for {load_['seconds']:.0f} s, with a writer",
        "",
        "| measure | value |",
        "|---|---|",
        f"| requests completed | {load_['requests']:,} |",
        f"| throughput (overall) | {load_['qps']:.1f} requests/s |",
        f"| throughput (median of per-second counts) | {load_['qps_median_per_second']:.0f} requests/s |",
        f"| latency p50 / p90 / p99 / max | {load_['latency_ms']['p50']:.1f} / {load_['latency_ms']['p90']:.1f} / "
        f"{load_['latency_ms']['p99']:.1f} / {load_['latency_ms']['max']:.1f} ms |",
        f"| errors | {load_['errors']} |",
        f"| documents written meanwhile (`POST /documents`) | {load_['writer']['documents_written']} (p50 {load_['writer']['p50_ms']:.0f} ms, "
        f"p99 {load_['writer']['p99_ms']:.0f} ms; errors {sum(load_['writer']['errors'].values())}) |",
        f"| written documents not searchable at the end | {len(load_['writer']['not_searchable_after'])} |",
        "",
        "| kind | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {kind} | {v['n']:,} | {v['p50']:.1f} | {v['p99']:.1f} |" for kind, v in load_["latency_ms_by_kind"].items()]
    if load_["errors_by_kind"]:
        lines += ["", "Errors: " + "; ".join(f"{k} ×{v}" for k, v in load_["errors_by_kind"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpora" / "demo")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-every", type=float, default=0.5, help="Seconds between the writer's documents.")
    parser.add_argument("--where", action="append", default=None, help="The filter of the filtered kind [default: year>=2005].")
    parser.add_argument("--name", default="serve_load")
    args = parser.parse_args()
    if args.clients > 64 or args.seconds > 600:
        raise SystemExit("bounded on purpose: at most 64 clients and 600 s")
    where = args.where or ["year>=2005"]

    embedder = load_embedder()
    index_path = WORK / args.corpus.name
    with Index.open_or_create(index_path, model=embedder) as building:
        building.add(Sources([args.corpus / "corpus.jsonl"]))
    queries = [json.loads(line)["text"] for line in (args.corpus / "queries.jsonl").open()]

    port = free_port()
    server = start_server(index_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        with Index.open(index_path, model=embedder) as index:
            counts = index.info()["counts"]
            print(f"overhead: {len(queries)} queries x {len(KINDS)} kinds x {args.rounds} rounds", file=sys.stderr)
            side_by_side = overhead(index, url, queries, where, args.rounds, server.pid)
        print(f"load: {args.clients} clients for {args.seconds:.0f} s with a writer", file=sys.stderr)
        loaded = asyncio.run(load(url, queries, where, args.clients, args.seconds, args.write_every))
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)

    result = {
        "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
        "corpus": {"path": str(args.corpus.relative_to(ROOT) if args.corpus.is_relative_to(ROOT) else args.corpus),
                   "documents": counts["documents"], "chunks": counts["chunks"], "queries": len(queries)},
        "filter": where,
        "rounds": args.rounds,
        "overhead": side_by_side,
        "load": loaded,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
