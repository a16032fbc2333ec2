"""What a reader-training step costs on this CPU, for each part of the train-reader recipe, side by side.

Run from the repository root (about 5 minutes on 2 cores):

    .venv/bin/python benchmarks/train_step.py [--rounds 3] [--steps 4] [--threads 2]

The same batches of SQuAD dev windows (articles 1-27, 16 windows of similar length a batch, as train-reader
groups them) go through a forward pass, the masked span loss, the backward pass and an AdamW update, under each
variant in turn, round after round, so that a change of machine load falls on all of them alike. Reported: the
median microseconds a token (padding included) and the step time, for

- the previous recipe: dropout 0.1, AdamW's per-tensor loop, glibc's default memory handling;
- without dropout (``train_reader(dropout=0.0)``, now the default);
- with the fused AdamW kernel as well (what train-reader uses on a CPU or GPU);
- with freed memory kept for reuse as well (``searchkit.device.keep_freed_memory``, called by train-reader).

Float32, or bfloat16 autocast where the CPU runs it natively, as train-reader chooses. Results go to
benchmarks/results/train_step.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from searchkit.device import autocast, keep_freed_memory, resolve_torch_precision  # noqa: E402
from searchkit.reader import load_qa_model  # noqa: E402
from searchkit.squad import load_squad  # noqa: E402
from searchkit.training import (  # noqa: E402
    collate, epoch_batches, prepare_features, set_dropout, span_loss,
)

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "datasets" / "squad-dev-tune" / "squad.json"
RESULTS = ROOT / "benchmarks" / "results"
GLIBC_MMAP_THRESHOLD = 128 * 1024  # glibc's default: blocks above it are mapped afresh and unmapped when freed

# name: (dropout, fused AdamW, keep freed memory)
VARIANTS = {
    "previous recipe (dropout 0.1, AdamW per-tensor loop)": (0.1, False, False),
    "no dropout": (0.0, False, False),
    "no dropout, fused AdamW": (0.0, True, False),
    "no dropout, fused AdamW, freed memory kept (the recipe now)": (0.0, True, True),
}


def set_glibc_memory(keep: bool) -> None:
    """Freed memory kept (train-reader's setting) or glibc's default thresholds, with the dynamic one then off."""
    if keep:
        keep_freed_memory()
    else:
        keep_freed_memory(GLIBC_MMAP_THRESHOLD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="Batches each variant runs per round.")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_torch_precision("auto", "cpu")
    examples = load_squad(SQUAD, slice(0, 27)).examples
    tokenizer, _ = load_qa_model("all-MiniLM-L6-v2", allow_untrained_head=True)
    features = prepare_features(tokenizer, examples, 384, 128)
    chosen = epoch_batches([len(f["input_ids"]) for f in features], 16, seed=0)[:args.rounds * args.steps + 1]
    batches = [collate(tokenizer, [features[i] for i in batch]) for batch in chosen]
    models = {}
    for name, (dropout, fused, _) in VARIANTS.items():
        _, model = load_qa_model("all-MiniLM-L6-v2", allow_untrained_head=True)
        set_dropout(model, dropout)
        model.train()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=fused))

    def step(name: str, batch: dict) -> float:
        model, optimizer = models[name]
        started = time.perf_counter()
        with autocast("cpu", precision):
            loss = span_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    per_token: dict[str, list[float]] = {name: [] for name in VARIANTS}
    per_step: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for name, (_, _, keep) in VARIANTS.items():  # a warm-up step each
        set_glibc_memory(keep)
        step(name, batches[0])
    for round_ in range(args.rounds):
        for name, (_, _, keep) in VARIANTS.items():
            set_glibc_memory(keep)
            for batch in batches[1 + round_ * args.steps:1 + (round_ + 1) * args.steps]:
                seconds = step(name, batch)
                per_token[name].append(seconds / batch["input_ids"].numel() * 1e6)
                per_step[name].append(seconds)
            print(f"round {round_ + 1} {name}: {statistics.median(per_token[name]):.0f} us a token", flush=True)
    baseline = statistics.median(per_token[next(iter(VARIANTS))])
    rows = {name: {"us_per_token": statistics.median(per_token[name]), "seconds_per_step": statistics.median(per_step[name]),
                   "speed_vs_previous": baseline / statistics.median(per_token[name])} for name in VARIANTS}
    tokens = statistics.mean(b["input_ids"].shape[1] for b in batches[1:])
    result = {"precision": precision, "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
              "mean_padded_window_tokens": tokens,
              "load_average": os.getloadavg(), "variants": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_step.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# A reader-training step, variant by variant (`benchmarks/train_step.py`)", "",
        f"{precision}, {args.threads} threads, {args.rounds} rounds of {args.steps} batches of 16 windows each, "
        f"load average after: {' / '.join(f'{x:.2f}' for x in result['load_average'])}; windows padded to "
        f"{tokens:.0f} tokens on average.", "",
        "| variant | us a token (median) | s a step (median) | speed against the previous recipe |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {row['us_per_token']:.0f} | {row['seconds_per_step']:.2f} | {row['speed_vs_previous']:.2f}x |"
              for name, row in rows.items()]
    (RESULTS / "train_step.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
