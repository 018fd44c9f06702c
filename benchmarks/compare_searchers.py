"""Compare searchers on the same super-networks with the same budget, over several seeds.

One `sandwich_kd` super-network per task (bundled MiniLM), then every searcher for `--num-trials`
evaluations per seed. Reports hypervolume (error vs. layer-parameter fraction, reference (1, 1))
after the budget, mean and spread over seeds, and plots hypervolume vs. evaluations and vs. wall time.

    python benchmarks/compare_searchers.py --tasks rte mrpc --seeds 0 1 2 --num-trials 40
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.pareto import hypervolume_trace, normalise_objectives
from nas_tune.report.plots import plot_hypervolume
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.search.searchers import SEARCHERS
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--searchers", nargs="+", default=sorted(SEARCHERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--num-trials", type=int, default=40)
    parser.add_argument("--max-train-samples", type=int, default=512)
    parser.add_argument("--max-validation-samples", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    quiet_libraries()
    rows, traces, time_axes = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            ckpt = Path(tmp) / f"supernet-{task}"
            data = DataConfig(
                task,
                data_dir=os.environ.get("GLUE_DIR"),
                max_train_samples=args.max_train_samples,
                max_validation_samples=args.max_validation_samples,
            )
            finetune_supernet(
                None,
                data,
                FinetuneConfig(epochs=args.epochs, batch_size=16),
                ckpt,
                max_seq_length=args.max_seq_length,
                show_progress=False,
            )
            for searcher in args.searchers:
                for seed in args.seeds:
                    store, _ = search_checkpoint(
                        ckpt,
                        Path(tmp) / f"{task}-{searcher}-{seed}",
                        SearchSettings(searcher=searcher, num_trials=args.num_trials, seed=seed),
                        show_progress=False,
                    )
                    frame = store.to_frame().sort_values("end_time")
                    frame = frame[frame["status"] == "completed"]
                    # every evaluation counts towards the budget; only full-fidelity ones can add hypervolume
                    points = normalise_objectives(frame, ["error", "params"])
                    points[frame["fidelity"].to_numpy() < 1.0] = np.nan
                    trace = np.pad(hypervolume_trace(points), (0, max(0, args.num_trials - len(frame))), mode="edge")
                    elapsed = (frame["end_time"] - frame["start_time"].min()).to_numpy()
                    elapsed = np.pad(elapsed, (0, len(trace) - len(elapsed)), mode="edge")
                    traces[(task, searcher, seed)] = trace
                    time_axes[(task, searcher, seed)] = elapsed
                    rows.append(
                        {
                            "task": task,
                            "searcher": searcher,
                            "seed": seed,
                            "evaluations": len(frame),
                            "full_fidelity": int((frame["fidelity"] >= 1.0).sum()),
                            "hypervolume": trace[-1],
                            "hv_at_half_budget": trace[len(trace) // 2 - 1],
                            "wall_seconds": float(frame["end_time"].max() - frame["start_time"].min()),
                        }
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
    runs = pd.DataFrame(rows)
    table = (
        runs.groupby(["task", "searcher"])
        .agg(
            hypervolume=("hypervolume", "mean"),
            hypervolume_std=("hypervolume", "std"),
            hv_at_half_budget=("hv_at_half_budget", "mean"),
            wall_seconds=("wall_seconds", "mean"),
        )
        .round(4)
        .reset_index()
        .sort_values(["task", "hypervolume"], ascending=[True, False])
    )
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "compare_searchers_runs.csv", runs.to_csv(index=False))
    atomic_write_text(RESULTS / "compare_searchers.csv", table.to_csv(index=False))
    atomic_write_json(
        RESULTS / "compare_searchers.json",
        {"command": "python benchmarks/compare_searchers.py " + " ".join(argv or sys.argv[1:]), "settings": vars(args)},
    )
    for task in args.tasks:
        mean_trace = {
            s: np.mean([traces[(task, s, seed)][: args.num_trials] for seed in args.seeds], axis=0)
            for s in args.searchers
        }
        plot_hypervolume(
            mean_trace,
            RESULTS / f"compare_searchers_{task}.png",
            title=f"{task}: mean hypervolume over {len(args.seeds)} seeds",
        )
        first = args.seeds[0]
        plot_hypervolume(
            {s: traces[(task, s, first)] for s in args.searchers},
            RESULTS / f"compare_searchers_{task}_time.png",
            xlabel="wall time (s)",
            x_values={s: time_axes[(task, s, first)] for s in args.searchers},
            title=f"{task}: hypervolume vs. wall time (seed {first})",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
