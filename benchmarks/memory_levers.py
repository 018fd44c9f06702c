"""Peak memory and training time of the levers that lower the fine-tuning peak, measured side by side.

Each variant runs the same short `nas-tune finetune` (RTE, sandwich_kd, batch 32 x 128 tokens: the default
pipeline's first stage) in a fresh process; the variants alternate round by round so that a change in the
machine's load reaches all of them alike. Per run: the kernel's high-water mark of the process's resident
set (`ru_maxrss` from wait4, so no short spike is missed) and the training seconds from its `supernet.json`.

Variants:
  plain           the defaults
  allocator       glibc settings that hand freed memory back at once (MALLOC_ARENA_MAX=2
                  MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=65536)
  allocator+thp   the same with transparent huge pages for malloc's memory (GLIBC_TUNABLES=glibc.malloc.hugetlb=1),
                  fewer page faults when that memory is touched afresh
  checkpointing   --gradient-checkpointing: each layer recomputed in the backward pass, only its input kept
  both            checkpointing with the allocator settings

    python benchmarks/memory_levers.py [--steps 12] [--rounds 2] [--variants plain checkpointing]   (needs GLUE_DIR)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.supernet import read_supernet_meta

RESULTS = Path(__file__).parent / "results"
ALLOCATOR = {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536"}
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {  # name: (environment, extra finetune flags)
    "plain": ({}, []),
    "allocator": (ALLOCATOR, []),
    "allocator+thp": ({**ALLOCATOR, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, []),
    "checkpointing": ({}, ["--gradient-checkpointing"]),
    "both": (ALLOCATOR, ["--gradient-checkpointing"]),
}


def run_once(variant: str, args: argparse.Namespace, output: Path) -> dict:
    """One fine-tuning in a child process; its peak resident set and training seconds."""
    environment, flags = VARIANTS[variant]
    command = [
        *(sys.executable, "-m", "nas_tune.cli", "finetune", "--dataset", args.dataset, "--max-steps", str(args.steps)),
        *("--save-steps", str(10 * args.steps), "--max-validation-samples", "64", "--output", str(output)),
        *("--max-seq-length", str(args.seq_len), *flags),
    ]
    log = output.with_suffix(".log")  # a file, not a pipe: nobody reads a pipe while wait4 waits, so it could fill
    started = time.perf_counter()
    with log.open("wb") as stderr:
        child = subprocess.Popen(command, env={**os.environ, **environment}, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"memory_levers: {variant} failed:\n{log.read_text(errors='replace')[-2000:]}")
    return {
        "variant": variant,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "train_seconds": round(read_supernet_meta(output)["train_seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load": float(Path("/proc/loadavg").read_text().split()[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="every variant runs once per round")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--dataset", default="rte")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.seq_len) < 1:
        print("memory_levers: --steps, --rounds and --seq-len must be at least 1.", file=sys.stderr)
        return 2
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            order = args.variants[round_ % len(args.variants) :] + args.variants[: round_ % len(args.variants)]
            for variant in order:
                rows.append({"round": round_ + 1, **run_once(variant, args, Path(scratch) / f"{variant}-{round_}")})
                print(rows[-1], flush=True)
                write_results(rows, argv, args)
    print(write_results(rows, argv, args).to_string(index=False))
    return 0


def write_results(rows: list[dict], argv: list[str] | None, args: argparse.Namespace) -> pd.DataFrame:
    """Every run, and per variant the median peak and seconds with both as ratios to plain (written after each run)."""
    runs = pd.DataFrame(rows)
    table = runs.groupby("variant", sort=False)[["peak_rss_mb", "train_seconds"]].median().reset_index()
    if "plain" in set(table.variant):
        plain = table.set_index("variant").loc["plain"]
        table["peak / plain"] = (table.peak_rss_mb / plain.peak_rss_mb).round(2)
        table["seconds / plain"] = (table.train_seconds / plain.train_seconds).round(2)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "memory_levers_runs.csv", runs.to_csv(index=False))
    atomic_write_text(RESULTS / "memory_levers.csv", table.to_csv(index=False))
    command = "python benchmarks/memory_levers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_json(RESULTS / "memory_levers.json", {"command": command, "settings": vars(args)})
    return table


if __name__ == "__main__":
    sys.exit(main())
