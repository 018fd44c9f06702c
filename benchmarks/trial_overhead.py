"""What the search engine costs per trial beyond the evaluation itself, and what a process per trial costs.

Measured side by side in one run, on one loaded super-network, the same configs in the same order:
  evaluation  the trial function alone (slice the sub-network, predict the validation split, score it)
              called from a plain thread pool of W threads
  engine      the same trial function run by nas-tune's driver: searcher (which proposes exactly these
              configs), local executor, results store with its fsyncs, running-trials file
  process     (with --process-per-trial) Syne Tune's LocalBackend running `evaluate_one_config.py` per
              trial: import, load, evaluate, exit
Both the evaluation and the engine run with `threads_per_worker(W)` torch threads in W worker threads,
exactly what the local executor sets, so the only difference is the engine's machinery. Rounds
interleave the two; the overhead is the median over rounds of engine / evaluation - 1.

Why an earlier version found the engine 35 % *faster* than its baseline: the baseline ran in the main
thread with whatever torch thread count the process inherited (1 under OMP_NUM_THREADS=1, which the
machine's guide prescribes) while the executor always sets the cores / workers (2) threads; the
baseline also ran pre-extracted models, the engine timed the model and data loading of a whole search.

    python benchmarks/trial_overhead.py [--num-configs 8] [--validation-samples 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from syne_tune.config_space import randint

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import LocalExecutor, threads_per_worker
from nas_tune.search.objectives import TrialFunction
from nas_tune.search.run import search_checkpoint
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import config_key
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent
OBJECTIVES = ["error", "params"]


def evaluation_seconds(function: TrialFunction, configs: list[dict], workers: int) -> float:
    """The trial function over `configs` in a plain pool of `workers` threads, with the executor's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads_per_worker(workers))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            start = time.perf_counter()
            list(pool.map(function, configs))
            return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def engine_seconds(function: TrialFunction, space, configs: list[dict], workers: int, run_dir: Path) -> float:
    """A whole driver run whose searcher proposes exactly `configs`, in order; checks that it evaluated just those."""
    searcher = make_searcher("random", space.config_space(), OBJECTIVES, initial_configs=configs)
    settings = SearchSettings(searcher="random", num_trials=len(configs), workers=workers)
    store = ResultsStore(run_dir)
    start = time.perf_counter()
    with LocalExecutor(function, workers) as executor:
        SearchDriver(store, searcher, executor, settings, show_progress=False).run()
    seconds = time.perf_counter() - start
    evaluated = sorted(config_key(r.config) for r in store.records())
    if evaluated != sorted(config_key(c) for c in configs):
        raise RuntimeError("the engine evaluated other configs than the baseline; the comparison would be meaningless")
    return seconds


def process_per_trial_seconds(ckpt: Path, configs, workdir: Path) -> float:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import (
        SingleFidelityScheduler,
    )

    space = {
        "checkpoint": str(ckpt),
        "num_layers": randint(1, 6),
        "num_heads": randint(1, 12),
        "num_units": randint(1, 1536),
    }
    points = [{"checkpoint": str(ckpt), **c} for c in configs]
    scheduler = SingleFidelityScheduler(
        space,
        metrics=OBJECTIVES,
        do_minimize=True,
        searcher="random_search",
        searcher_kwargs={"points_to_evaluate": points},
    )
    tuner = Tuner(
        trial_backend=LocalBackend(entry_point=str(HERE / "evaluate_one_config.py")),
        scheduler=scheduler,
        stop_criterion=StoppingCriterion(max_num_trials_completed=len(configs)),
        n_workers=1,
        sleep_time=0.2,
        results_update_interval=60,
        print_update_interval=600,
        save_tuner=False,
        tuner_name=f"overhead-{os.getpid()}",
    )
    start = time.perf_counter()
    tuner.run()
    return time.perf_counter() - start


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-configs", type=int, default=8)
    parser.add_argument("--validation-samples", type=int, default=128)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of evaluation and engine")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--process-per-trial", action="store_true", help="also time a process per trial (slow: an import and load each)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("num_configs", "validation_samples", "max_seq_length", "rounds"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if min(args.workers) <= 0 or max(args.workers) > args.num_configs:
        raise UserError(f"--workers must lie between 1 and --num-configs ({args.num_configs}), got {args.workers}.")
    return args


def measure(args: argparse.Namespace, workdir: Path) -> pd.DataFrame:
    ckpt = workdir / "supernet"
    data = DataConfig("rte", max_train_samples=32, max_validation_samples=args.validation_samples, seed=args.seed)
    finetune_supernet(
        None,
        data,
        FinetuneConfig(epochs=1, batch_size=16),
        ckpt,
        max_seq_length=args.max_seq_length,
        show_progress=False,
    )
    rng = np.random.default_rng(args.seed)
    configs = [
        {
            "num_layers": int(rng.integers(1, 7)),
            "num_heads": int(rng.integers(1, 13)),
            "num_units": int(rng.integers(1, 1537)),
        }
        for _ in range(args.num_configs)
    ]
    _, setup = search_checkpoint(
        ckpt, workdir / "probe", SearchSettings(searcher="random", num_trials=1), show_progress=False
    )
    function = TrialFunction(setup.evaluator, OBJECTIVES)
    function(configs[0])  # warm-up, outside every timing
    rows = []
    for workers in args.workers:
        rounds = []
        for index in range(args.rounds):  # interleaved, the order alternating: load bursts hit both sides alike
            sample = {}
            for side in ("evaluation", "engine") if index % 2 == 0 else ("engine", "evaluation"):
                sample[side] = (
                    evaluation_seconds(function, configs, workers)
                    if side == "evaluation"
                    else engine_seconds(
                        function, setup.evaluator.search_space, configs, workers, workdir / f"engine-{workers}-{index}"
                    )
                )
            rounds.append(sample)
            print(f"workers {workers} round {index}: {rounds[-1]}", file=sys.stderr)
        evaluation = statistics.median(r["evaluation"] for r in rounds)
        engine = statistics.median(r["engine"] for r in rounds)
        rows.append(
            {
                "workers": workers,
                "torch_threads_per_worker": threads_per_worker(workers),
                "trials": args.num_configs,
                "evaluation_s_per_trial": evaluation / args.num_configs,
                "engine_s_per_trial": engine / args.num_configs,
                "engine_ms_per_trial_beyond_evaluation": 1000
                * statistics.median((r["engine"] - r["evaluation"]) / args.num_configs for r in rounds),
                "engine_overhead": statistics.median(r["engine"] / r["evaluation"] - 1 for r in rounds),
                "overhead_spread": [
                    min(r["engine"] / r["evaluation"] - 1 for r in rounds),
                    max(r["engine"] / r["evaluation"] - 1 for r in rounds),
                ],
            }
        )
    if args.process_per_trial:
        seconds = process_per_trial_seconds(ckpt, configs, workdir)
        rows.append(
            {
                "workers": 1,
                "trials": args.num_configs,
                "process_s_per_trial": seconds / args.num_configs,
                "process_over_evaluation": seconds / (rows[0]["evaluation_s_per_trial"] * args.num_configs),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UserError as error:
        print(f"trial_overhead.py: error: {error}", file=sys.stderr)
        return 2
    quiet_libraries()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        table = measure(args, Path(tmp))
    print(table.round(4).to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "trial_overhead.csv", table.round(4).to_csv(index=False))
    atomic_write_json(
        RESULTS / "trial_overhead.json",
        {
            "command": "python benchmarks/trial_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": vars(args),
            "cpu_count": os.cpu_count(),
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "rows": table.round(4).to_dict("records"),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
