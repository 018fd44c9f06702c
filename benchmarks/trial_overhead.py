"""Per-trial cost of the search engine vs. the pure forward pass, and vs. a process per trial.

Measured side by side in one run on the same super-network, the same configs and the same data:
  pure      forward passes of each sliced sub-network over the validation split (no search machinery)
  engine    nas-tune's driver + searcher + results store + local executor (1 and 2 worker threads)
  process   Syne Tune's LocalBackend running `evaluate_one_config.py` per trial (load + evaluate + exit)
Ratios are wall time per trial / pure forward time per trial.

    python benchmarks/trial_overhead.py [--num-configs 12] [--validation-samples 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from syne_tune.config_space import randint

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent


def pure_forward_seconds(setup, configs) -> float:
    evaluator = setup.evaluator
    space = evaluator.search_space
    models = [evaluator.adapter.extract(evaluator.model, space.to_subnetwork(c)).eval() for c in configs]
    evaluator.predict(models[0], evaluator.data)  # warm-up
    start = time.perf_counter()
    for model in models:
        evaluator.predict(model, evaluator.data)
    return time.perf_counter() - start


def engine_seconds(ckpt: Path, configs, workers: int, workdir: Path) -> float:
    from nas_tune.search import searchers

    settings = SearchSettings(searcher="random", num_trials=len(configs), workers=workers)
    original = searchers.make_searcher

    def fixed_configs(*args, **kwargs):  # the searcher proposes exactly the benchmark's configs, in order
        kwargs["initial_configs"] = configs
        return original(*args, **kwargs)

    searchers.make_searcher = fixed_configs  # start_searcher looks it up in its module
    try:
        start = time.perf_counter()
        search_checkpoint(ckpt, workdir / f"engine-{workers}", settings, show_progress=False)
        return time.perf_counter() - start
    finally:
        searchers.make_searcher = original


def process_per_trial_seconds(ckpt: Path, configs, workdir: Path) -> float:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

    space = {"checkpoint": str(ckpt), "num_layers": randint(1, 6), "num_heads": randint(1, 12), "num_units": randint(1, 1536)}
    points = [{"checkpoint": str(ckpt), **c} for c in configs]
    scheduler = SingleFidelityScheduler(space, metrics=["error", "params"], do_minimize=True, searcher="random_search",
                                        searcher_kwargs={"points_to_evaluate": points})
    tuner = Tuner(trial_backend=LocalBackend(entry_point=str(HERE / "evaluate_one_config.py")), scheduler=scheduler,
                  stop_criterion=StoppingCriterion(max_num_trials_completed=len(configs)), n_workers=1, sleep_time=0.2,
                  results_update_interval=60, print_update_interval=600, save_tuner=False, tuner_name=f"overhead-{os.getpid()}")
    start = time.perf_counter()
    tuner.run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-configs", type=int, default=12)
    parser.add_argument("--validation-samples", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved measurement rounds of pure forward and engine")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ckpt = workdir / "supernet"
        data = DataConfig("rte", max_train_samples=32, max_validation_samples=args.validation_samples, seed=args.seed)
        finetune_supernet(None, data, FinetuneConfig(epochs=1, batch_size=16), ckpt, max_seq_length=args.max_seq_length, show_progress=False)
        rng = np.random.default_rng(args.seed)
        configs = [{"num_layers": int(rng.integers(1, 7)), "num_heads": int(rng.integers(1, 13)), "num_units": int(rng.integers(1, 1537))}
                   for _ in range(args.num_configs)]
        store, setup = search_checkpoint(ckpt, workdir / "probe", SearchSettings(searcher="random", num_trials=1), show_progress=False)
        timings: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):  # interleaved rounds; the best of each is robust to load bursts
            timings.setdefault(("pure forward", 1), []).append(pure_forward_seconds(setup, configs))
            for workers in (1, 2):
                timings.setdefault(("nas-tune engine", workers), []).append(engine_seconds(ckpt, configs, workers, workdir / str(round_)))
        pure = min(timings[("pure forward", 1)])
        rows = [{"pattern": pattern, "workers": workers, "seconds": min(values)} for (pattern, workers), values in timings.items()]
        rows.append({"pattern": "process per trial (Syne Tune LocalBackend)", "workers": 1, "seconds": process_per_trial_seconds(ckpt, configs, workdir)})
    table = pd.DataFrame(rows)
    table["seconds_per_trial"] = table["seconds"] / args.num_configs
    table["ratio_to_pure"] = table["seconds"] / pure
    table = table.round(3)
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "trial_overhead.csv", table.to_csv(index=False))
    atomic_write_json(RESULTS / "trial_overhead.json", {"command": "python benchmarks/trial_overhead.py " + " ".join(argv or sys.argv[1:]),
                                                        "settings": vars(args), "rows": table.to_dict("records")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
