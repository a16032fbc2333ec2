"""Reliability at scale: many SIGKILLs, many readers beside a writer, every damaged file, a full disk.

The long version of tests/test_reliability.py, built from the same functions:

- ``--kills`` SIGKILLs at random moments of ``searchkit index``, ``delete`` and ``reindex`` on Flat, HNSW32
  and IVF,Flat indexes; after each: does the index open, is any document half-present, do the counts of
  documents, chunks, full-text rows and vectors agree, does the known text find its document; then the same
  command is run again on the command line and must complete.
- ``--readers`` reader processes search while one writer adds and deletes documents for ``--seconds``:
  reader errors, stale reads (a replaced or deleted version seen after its replacement committed, or a
  committed one missed), inconsistent reads, and whether every reader sees the final state afterwards.
- every damaged file: vector files (derivable: must be rebuilt, answer as before, and say so), manifest and
  store (not derivable: must be refused with a one-line error, exit 2).
- a full disk (RLIMIT_FSIZE) during ingest at several limits, and an HNSW delete seen by a new process.

    .venv/bin/python benchmarks/reliability.py                      # --kills 50 --seconds 60 --readers 8
    .venv/bin/python benchmarks/reliability.py --kills 6 --seconds 10 --readers 2 --out /tmp/rel

Writes ``results/reliability.json`` and ``results/reliability.md`` (or ``--out`` + .json/.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import test_reliability as checks  # noqa: E402  (the checks the test suite runs, at a smaller scale)
from searchkit import load_embedder  # noqa: E402

DISK_LIMITS = (64_000, 256_000, 700_000)


def kills(workdir: Path, reference_dir: Path, reference: Any, texts: dict[str, str], embedder: Any,
          count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` killed commands: rounds of one operation on every index type at once, cycling the operations."""
    rng = random.Random(seed)
    runs: list[dict[str, Any]] = []
    round_number = 0
    while len(runs) < count:
        operation = checks.OPERATIONS[round_number % len(checks.OPERATIONS)]
        types = checks.INDEX_TYPES[: count - len(runs)]
        started = time.monotonic()
        # Each command run pays a model load: rerun on the command line in alternate cycles, in-process otherwise.
        with_cli = (round_number // len(checks.OPERATIONS)) % 2 == 0
        try:
            done = checks.kill_round(workdir, reference_dir, reference, texts, operation, types, embedder, rng,
                                     rerun_with_cli=with_cli)
        except Exception as exc:  # noqa: BLE001 - a round that cannot even be set up is a finding too
            done = [checks.KillRun(operation, t, 0.0, problems=[f"error: round failed: {type(exc).__name__}: {exc}"])
                    for t in types]
        runs += [{**asdict(run), "rerun_on_command_line": with_cli} for run in done]
        round_number += 1
        print(f"kills {len(runs)}/{count}: {operation} in {time.monotonic() - started:.0f} s, "
              f"problems {sum(len(r['problems']) + len(r['rerun_problems']) for r in runs)}", flush=True)
    return runs


def kill_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def kinds(run: dict[str, Any]) -> Counter[str]:
        return Counter(problem.split(":", 1)[0] for problem in run["problems"])

    def summarise(selected: list[dict[str, Any]]) -> dict[str, int]:
        return {
            "kills": len(selected),
            "killed_mid_operation": sum(r["killed"] for r in selected),
            "finished_before_the_kill": sum(not r["killed"] for r in selected),
            "unopenable": sum(kinds(r)["unopenable"] > 0 for r in selected),
            "half_present_documents": sum(kinds(r)["half_present"] for r in selected),
            "count_mismatches": sum(kinds(r)["count_mismatch"] for r in selected),
            "lost_or_resurrected": sum(kinds(r)["missing"] + kinds(r)["resurrected"] for r in selected),
            "wrong_search_results": sum(kinds(r)["search"] for r in selected),
            "other_problems": sum(sum(kinds(r).values()) for r in selected) - sum(
                kinds(r)[k] for r in selected for k in
                ("unopenable", "half_present", "count_mismatch", "missing", "resurrected", "search")),
            "reruns_failed": sum(bool(r["rerun_problems"]) for r in selected),
        }

    table = {"all": summarise(runs)}
    for operation in checks.OPERATIONS:
        for index_type in checks.INDEX_TYPES:
            selected = [r for r in runs if r["operation"] == operation and r["index_type"] == index_type]
            if selected:
                table[f"{operation} / {index_type}"] = summarise(selected)
    return table


def corruption(workdir: Path, reference_dir: Path, reference: Any, embedder: Any) -> dict[str, Any]:
    derivable = []
    for index_type in checks.INDEX_TYPES:
        for name, how in checks.DERIVABLE:
            outcome = checks.recover_derivable(workdir, reference_dir, reference, embedder, name, how, index_type)
            outcome["passed"] = bool(outcome.get("opened") and outcome.get("same_hits")
                                     and outcome.get("counts_agree") and outcome.get("said"))
            derivable.append(outcome)
    path = checks.copy_of(reference_dir, workdir / "cli-garbage-vectors", embedder, "HNSW32")
    checks.damage(path, "vectors.faiss", "garbage", random.Random(1))
    target = sorted(reference.documents)[5]
    result = checks.run_cli("search", reference.documents[target], "--index", path, "-k", 3, "--json")
    first = json.loads(result.stdout)[0]["doc_id"] if result.returncode == 0 and result.stdout.strip() else None
    cli_derivable = {"case": "vectors.faiss garbage (HNSW32), searchkit search", "returncode": result.returncode,
                     "first_hit_right": first == target, "said_on_stderr": "vector" in result.stderr.lower(),
                     "stderr": result.stderr.strip()[-400:]}
    shutil.rmtree(path, ignore_errors=True)

    cases = [checks.refuse_underivable(workdir, reference_dir, reference, embedder, name, how)
             for name, how in checks.UNDERIVABLE]
    query = reference.documents[sorted(reference.documents)[0]]
    results = checks.run_cli_all(*[("search", query, "--index", path) for _, path in cases])
    underivable = []
    for (outcome, path), result, (name, _) in zip(cases, results, checks.UNDERIVABLE):
        outcome["problems"] = checks.judge_refusal(outcome, result, name)
        outcome["passed"] = not outcome["problems"]
        underivable.append(outcome)
        shutil.rmtree(path, ignore_errors=True)
    return {"derivable": derivable, "derivable_cli": cli_derivable, "underivable": underivable}


def failed(exc: BaseException) -> str:
    traceback.print_exc()
    return f"section failed: {type(exc).__name__}: {exc}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Reliability",
        "",
        f"Command: `{report['command']}`  ",
        f"Commit: {report['commit']}, {report['date']}, {report['machine']}, {report['minutes']:.1f} minutes.",
        "",
        f"Corpus: {report['corpus']['documents']} documents, {report['corpus']['chunks']} chunks "
        f"({checks.CHUNKING.max_tokens}-word-piece chunks). Every check goes through the command line or the Python API; "
        "the store is read directly (read-only) only to count full-text rows and each document's chunks.",
        "",
        "## SIGKILL at random moments",
        "",
        "Each killed command ran in its own process and was killed with SIGKILL at a seeded random moment of its work "
        "(after its first batch was committed for `index`, after it opened the store for `delete` and `reindex`). "
        "After each kill the index was opened and checked, then the same command was run again (on the command line in "
        "alternate cycles of the three commands, through the Python API otherwise) and the index checked again.",
        "",
        "| commands | kills | killed mid-operation | unopenable | half-present documents | count mismatches | "
        "lost or resurrected | wrong search results | other problems | reruns failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["kills"]["summary"].items():
        lines.append(f"| {name} | {row['kills']} | {row['killed_mid_operation']} | {row['unopenable']} | "
                     f"{row['half_present_documents']} | {row['count_mismatches']} | {row['lost_or_resurrected']} | "
                     f"{row['wrong_search_results']} | {row['other_problems']} | {row['reruns_failed']} |")
    problems = [f"{r['operation']} / {r['index_type']} (delay {r['delay']} s): {p}"
                for r in report["kills"]["runs"] for p in r["problems"] + r["rerun_problems"]]
    if problems:
        lines += ["", "Problems found:", ""] + [f"- {p}" for p in problems[:30]]
        if len(problems) > 30:
            lines.append(f"- ... and {len(problems) - 30} more (see the JSON)")
    c = report["concurrency"]
    lines += [
        "",
        "## Concurrent readers and a writer",
        "",
        f"{c['readers']} reader processes searched (70% restricted to one writer document by its unique marker, 30% an "
        f"unchanging document by its text) while one writer added new versions of and deleted 12 documents for "
        f"{c['seconds']} s; after the writer finished, each reader searched every writer document once more.",
        "",
        "| writes | searches | reader errors | stale reads | inconsistent reads | unchanging document not first | "
        "final searches | final searches not showing the final state |",
        "|---|---|---|---|---|---|---|---|",
        f"| {c['writes']} | {c['searches']} | {c['reader_errors']} | {c['stale_reads']} | {c['inconsistent_reads']} | "
        f"{c['wrong_first']} | {c['final_searches']} | {c['stale_final']} |",
    ]
    for key in ("reader_errors", "stale_reads", "inconsistent_reads", "wrong_first", "stale_final", "writer_errors"):
        for example in report["concurrency_examples"].get(key, [])[:5]:
            lines.append(f"- {key}: {example}")
    lines += [
        "",
        "## Damaged files",
        "",
        "Derivable (the vector files): expected to be rebuilt from the store on open, to return the same top-5 hits as "
        "before the damage, to keep vectors = chunks, and to say that it recovered (a warning, a log record or an info "
        "field).",
        "",
        "| file | damage | index type | opened | same hits | counts agree | said | passed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in report["corruption"]["derivable"]:
        name, how = o["case"].split(" ", 1)
        said = "; ".join(o.get("said") or []) or "nothing"
        lines.append(f"| {name} | {how} | {o['index_type']} | {o.get('opened')} | {o.get('same_hits', '-')} | "
                     f"{o.get('counts_agree', '-')} | {said[:120]} | {o['passed']} |")
    d = report["corruption"]["derivable_cli"]
    lines += ["", f"On the command line ({d['case']}): exit {d['returncode']}, right first hit {d['first_hit_right']}, "
              f"recovery said on stderr {d['said_on_stderr']}.", "",
              "Not derivable (manifest, store): expected a SearchkitError in the library and, on the command line, exit 2 "
              "with one line that says what to do.", "",
              "| file | damage | library | CLI exit | CLI stderr | passed |", "|---|---|---|---|---|---|"]
    for o in report["corruption"]["underivable"]:
        name, how = o["case"].split(" ", 1)
        stderr = o["cli"]["stderr"].replace("\n", " / ").replace("|", "\\|")
        lines.append(f"| {name} | {how} | {o['library']}: {o['detail'][:140]} | {o['cli']['returncode']} | "
                     f"{stderr[:200]} | {o['passed']} |")
    lines += ["", "## Disk full during ingest", "",
              f"`searchkit index` adding {checks.INGESTED} documents to an index of "
              f"{checks.DOCUMENTS - checks.INGESTED}, with RLIMIT_FSIZE capping every file it writes "
              "(writes past the cap fail with EFBIG, as on a full disk). Expected: exit 2, one line naming the disk or file "
              "size, no traceback; everything committed before intact; a rerun without the cap completes.", "",
              "| file size cap | exit | one-line error | names the disk | problems after | stderr (tail) |",
              "|---|---|---|---|---|---|"]
    for o in report["disk_full"]:
        stderr = o["stderr"].replace("\n", " / ").replace("|", "\\|")
        lines.append(f"| {o['limit_bytes']:,} B | {o['returncode']} | {o['one_line_error']} | {o['says_disk']} | "
                     f"{len(o['problems'])} | {stderr[-200:]} |")
    h = report["hnsw_delete"]
    lines += ["", "## HNSW delete seen by a new process", "",
              f"One document deleted from an HNSW32 index; then, in new processes, `searchkit search <its text> -k 2`: "
              f"exit {h['search_returncode']}, hits {h.get('hits')} (expected 2, not `{h['victim']}`); `searchkit info "
              f"--json`: counts {h.get('counts')} (expected vectors = chunks = {h['expected_chunks']}).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs across index, delete and reindex")
    parser.add_argument("--seconds", type=float, default=60, help="how long the writer writes beside the readers")
    parser.add_argument("--readers", type=int, default=8, help="reader processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reliability", help="results path, no suffix")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "reliability")
    parser.add_argument("--commit", help="commit to report, when running a snapshot outside git [default: HEAD]")
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    os.environ.setdefault("SEARCHKIT_CACHE_DIR", str(args.work / "cache"))
    embedder = load_embedder()
    texts = checks.corpus()
    reference_dir = args.work / "reference"
    checks.build_reference(reference_dir, texts, embedder)
    reference = checks.read_store(reference_dir)
    print(f"reference: {len(reference.documents)} documents, {reference.chunks} chunks", flush=True)

    for folder in ("kills", "concurrency", "damage", "hnsw", *(f"disk-{limit}" for limit in DISK_LIMITS)):
        (args.work / folder).mkdir()
    runs = kills(args.work / "kills", reference_dir, reference, texts, embedder, args.kills, args.seed)
    try:
        concurrency = checks.readers_and_writer(args.work / "concurrency", reference_dir, reference, embedder,
                                                readers=args.readers, seconds=args.seconds, seed=args.seed)
    except Exception as exc:  # noqa: BLE001 - reported, and the other sections still run
        concurrency = checks.ConcurrencyOutcome(args.readers, args.seconds, writer_errors=[failed(exc)])
    print(f"concurrency: {concurrency.figures()}", flush=True)
    try:
        damaged = corruption(args.work / "damage", reference_dir, reference, embedder)
    except Exception as exc:  # noqa: BLE001
        damaged = {"derivable": [], "underivable": [], "derivable_cli": {
            "case": f"not run: {failed(exc)}", "returncode": None, "first_hit_right": None, "said_on_stderr": None}}
    print("corruption done", flush=True)
    disk = []
    for limit in DISK_LIMITS:
        try:
            disk.append(checks.fill_disk(args.work / f"disk-{limit}", reference_dir, reference, texts, embedder,
                                         limit))
        except Exception as exc:  # noqa: BLE001
            disk.append({"limit_bytes": limit, "returncode": None, "one_line_error": None, "says_disk": None,
                         "stderr": "", "problems": [failed(exc)]})
    victim = sorted(reference.documents)[3]
    try:
        hnsw = checks.hnsw_delete_across_processes(args.work / "hnsw", reference_dir, reference, embedder, victim)
    except Exception as exc:  # noqa: BLE001
        hnsw = {"search_returncode": None, "error": failed(exc)}
    hnsw.update(victim=victim, expected_chunks=reference.chunks - len(reference.spans[victim]))
    hnsw["passed"] = (hnsw.get("hits") is not None and len(hnsw["hits"]) == 2 and victim not in hnsw["hits"]
                      and hnsw.get("counts", {}).get("vectors") == hnsw.get("counts", {}).get("chunks")
                      == hnsw["expected_chunks"])

    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=checks.PACKAGE_ROOT).stdout.strip() or "unknown"
    examples = {key: value[:10] for key, value in asdict(concurrency).items() if isinstance(value, list)}
    report = {
        "command": " ".join([".venv/bin/python", "benchmarks/reliability.py", *sys.argv[1:]]),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "minutes": (time.monotonic() - started) / 60,
        "corpus": {"documents": len(reference.documents), "chunks": reference.chunks},
        "kills": {"summary": kill_summary(runs), "runs": runs},
        "concurrency": concurrency.figures(),
        "concurrency_examples": examples,
        "corruption": damaged,
        "disk_full": disk,
        "hnsw_delete": hnsw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(f"wrote {args.out}.json and .md in {report['minutes']:.1f} minutes", flush=True)


if __name__ == "__main__":
    main()
