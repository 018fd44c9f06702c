"""Compare super-network training strategies: same fine-tuning budget, same search budget afterwards.

For each task x strategy x seed: fine-tune the bundled MiniLM as a super-network, run the same
local-search budget on the validation split, re-score the Pareto set on the test split, and report
the hypervolume of the validation and test fronts and the test metric at ~50 % of the layer
parameters. The `standard` strategy's full model is the unpruned fine-tuned reference.

    python benchmarks/supernet_strategies.py --tasks rte mrpc --seeds 0 1 [--max-train-samples 512 ...] [--resume]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.pareto import hypervolume, normalise_objectives, pareto_front
from nas_tune.report.plots import save_figure
from nas_tune.report.summary import completed_trials
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.select import config_of, pick, test_evaluator
from nas_tune.supernet import STRATEGIES, FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"


def one_run(task: str, strategy: str, seed: int, args, workdir: Path) -> dict:
    data = DataConfig(
        task,
        data_dir=args.data_dir,
        max_train_samples=args.max_train_samples,
        max_validation_samples=args.max_validation_samples,
        max_test_samples=args.max_test_samples,
        seed=seed,
    )
    start = time.perf_counter()
    ckpt = workdir / f"{task}-{strategy}-{seed}"
    finetune_supernet(
        None,
        data,
        FinetuneConfig(strategy=strategy, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed),
        ckpt,
        max_seq_length=args.max_seq_length,
        overwrite=True,
        show_progress=False,
    )
    tuned = time.perf_counter() - start
    store, setup = search_checkpoint(
        ckpt,
        workdir / f"search-{task}-{strategy}-{seed}",
        SearchSettings(searcher="local_search", num_trials=args.num_trials, seed=seed),
        data_dir=args.data_dir,
        overwrite=True,
        show_progress=False,
    )
    trials = completed_trials(store)
    front = pareto_front(trials, ["error", "params"])
    tester = test_evaluator(setup, args.max_seq_length)
    front = front.assign(test_error=[tester.evaluate(config_of(row)).metrics["error"] for _, row in front.iterrows()])
    half = pick(trials, max_params=0.5) if (trials["params"] <= 0.5).any() else None
    full = trials.loc[trials["params"].idxmax()]
    return {
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "metric": setup.data.task.metric,
        "hv_validation": hypervolume(normalise_objectives(trials, ["error", "params"])),
        "hv_test": hypervolume(normalise_objectives(front.assign(error=front["test_error"]), ["error", "params"])),
        "test_metric_full": 1 - tester.evaluate(config_of(full)).metrics["error"],
        "test_metric_at_50pct": None if half is None else 1 - tester.evaluate(config_of(half)).metrics["error"],
        "params_at_50pct": None if half is None else float(half["params"]),
        "finetune_seconds": round(tuned, 1),
        "search_seconds": round(time.perf_counter() - start - tuned, 1),
    }


def plot_strategies(runs: pd.DataFrame, tasks: list[str], strategies: list[str], path: Path) -> None:
    """Per task: test hypervolume and the test metric at ~50 % of the layer parameters, mean and std over seeds,
    against the unpruned standard fine-tuned model (dashed)."""
    figure = Figure(figsize=(4.5 * len(tasks), 6), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(tasks), squeeze=False)
    for column, task in enumerate(tasks):
        done = runs[runs.task == task].groupby("strategy")
        for row, (measure, label) in enumerate(
            (("hv_test", "test hypervolume"), ("test_metric_at_50pct", "test metric at ~50 % params"))
        ):
            mean, std = done[measure].mean().reindex(strategies), done[measure].std().reindex(strategies)
            axis = axes[row][column]
            axis.bar(
                range(len(strategies)),
                mean.to_numpy(),
                yerr=std.fillna(0).to_numpy(),
                capsize=3,
                color="tab:blue",
                alpha=0.8,
            )
            if row == 1 and "standard" in set(runs.strategy):
                axis.axhline(
                    done["test_metric_full"].mean().get("standard"),
                    color="grey",
                    linestyle="--",
                    linewidth=1,
                    label="unpruned (standard)",
                )
                axis.legend(fontsize=8)
            axis.set_xticks(range(len(strategies)), strategies, rotation=30, fontsize=8)
            axis.set(ylabel=label, title=f"{task} ({done.size().max()} seeds)")
            axis.grid(True, axis="y", alpha=0.3)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    parser.add_argument("--max-train-samples", type=int, default=512)
    parser.add_argument("--max-validation-samples", type=int, default=256)
    parser.add_argument("--max-test-samples", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    parser.add_argument("--num-trials", type=int, default=30)
    parser.add_argument(
        "--aggregate-only", action="store_true", help="only rebuild the table and plot from the runs file"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs file of an interrupted benchmark (same settings) and skip its runs",
    )
    args = parser.parse_args(argv)
    quiet_libraries()
    RESULTS.mkdir(exist_ok=True)
    runs_path = RESULTS / "supernet_strategies_runs.csv"
    if not args.aggregate_only:
        if not args.resume:
            runs_path.unlink(missing_ok=True)
        done_runs = (
            set(pd.read_csv(runs_path)[["task", "strategy", "seed"]].itertuples(index=False, name=None))
            if runs_path.exists()
            else set()
        )
        with tempfile.TemporaryDirectory() as workdir:
            for seed in args.seeds:  # a benchmark stopped early still covers every task
                for task in args.tasks:
                    for strategy in args.strategies:
                        if (task, strategy, seed) in done_runs:
                            continue
                        row = one_run(task, strategy, seed, args, Path(workdir))
                        print(row, file=sys.stderr, flush=True)
                        done = (
                            pd.concat([pd.read_csv(runs_path), pd.DataFrame([row])])
                            if runs_path.exists()
                            else pd.DataFrame([row])
                        )
                        atomic_write_text(
                            runs_path, done.to_csv(index=False)
                        )  # an interrupted benchmark keeps its runs
    runs = pd.read_csv(runs_path)
    args.tasks = [t for t in args.tasks if t in set(runs["task"])]
    args.strategies = [s for s in args.strategies if s in set(runs["strategy"])]
    table = (
        runs.groupby(["task", "strategy"])
        .agg(
            hv_validation=("hv_validation", "mean"),
            hv_validation_std=("hv_validation", "std"),
            hv_test=("hv_test", "mean"),
            hv_test_std=("hv_test", "std"),
            test_metric_at_50pct=("test_metric_at_50pct", "mean"),
            test_metric_full=("test_metric_full", "mean"),
            finetune_seconds=("finetune_seconds", "mean"),
            seeds=("seed", "count"),
        )
        .round(4)
        .reset_index()
    )
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "supernet_strategies.csv", table.to_csv(index=False))
    if not args.aggregate_only:  # the command that measured the runs, not the one that re-plotted them
        atomic_write_json(
            RESULTS / "supernet_strategies.json",
            {
                "command": "python benchmarks/supernet_strategies.py " + " ".join(argv or sys.argv[1:]),
                "settings": vars(args),
            },
        )
    plot_strategies(runs, args.tasks, args.strategies, RESULTS / "supernet_strategies.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
