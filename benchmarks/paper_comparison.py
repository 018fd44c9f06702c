"""Head-to-head: weight-sharing NAS (with and without --reorder / --repair) against the pruning baselines.

Per task, all on the bundled MiniLM and the same seeded splits (validation = 30 % of the training file, test =
GLUE dev): every method's Pareto set is chosen on validation error vs. layer parameters and reported on the
test split. Table columns:
  hv              hypervolume of (test error, params) of the validation-chosen set, reference (1, 1)
  max_reduction   largest share of layer parameters removed with < 5 % relative drop of the unpruned
                  standard fine-tuned model's test metric (the paper's headline measure); blank (NaN) when that
                  model is no better than the task's trivial predictor, since then every model is "within 5 %"
  test@50, test@25  test metric of the best-validation model with <= 50 % / <= 25 % of the layer parameters
  ms@50           measured latency (batch 1, max-seq-length tokens) of that <= 50 % model, in milliseconds
  finetune_s / search_s / total_s   cost: fine-tuning (standard model, super-network, or every candidate)
                  vs. search / pruning, for the whole front (rfp/importance: the whole budget grid)
  hv@20           the same hypervolume inside params >= 0.2 only (a point below counts as if at 0.2), so a front
                  that reaches tiny models at chance level gains nothing there
  max_red@1/@10   as max_reduction, with 1 % and 10 % tolerated drop
Methods: rfp and importance on the standard fine-tuned model; rfp_long, rfp on a standard model fine-tuned for
--long-epochs (the equal-compute reference for the two-stage recipes); layer_drop and standard_nas (from
pre-trained weights); nas (sandwich_kd super-network from the pre-trained model + search), nas_old (the same with the
fresh head's bias at zero, the recipe before the label-prior fix), nas+reorder, nas+repair; two_stage (the
super-network starts from the standard fine-tuned model and is distilled from it for --two-stage-steps steps) and
two_stage+reorder (heads/neurons first sorted by importance under the fine-tuned head), two_stage+reorder+stratified (the
same, sub-network sizes drawn evenly from [--min-params, 1]), and two_stage+reorder+medium (the same
in the `medium` space, per-layer heads and neurons with every layer kept, as rfp keeps them). The two-stage cost includes
the standard fine-tuning. Every fine-tuning starts a fresh head at the label prior (--head-init prior) except
nas_old; --pooling decides what it reads (auto: the mean token state for the bundled MiniLM). Fine-tuning seconds are the wall time of the whole fine-tuning call (loading and reordering included).

    python benchmarks/paper_comparison.py --tasks rte mrpc cola stsb sst2 --seeds 0 1   # seed-major: every task for seed 0 first
    python benchmarks/paper_comparison.py --tasks stsb --seeds 0 --max-train-samples 256 --max-validation-samples 128 \\
        --max-test-samples 200 --max-seq-length 64 --epochs 1 --num-trials 12 --standard-nas-trials 4 \\
        --budgets 0.25,0.5,0.75 --num-samples 128 --tune-samples 128        # smoke run, ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.baselines import BASELINES, BaselineSettings, Scorer, load_inputs, run_baseline
from nas_tune.baselines.front import score_front
from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig, get_task
from nas_tune.errors import UserError
from nas_tune.io import atomic_write_json, atomic_write_text, read_json
from nas_tune.metrics.trivial import trivial_predictor
from nas_tune.models import SubNetwork
from nas_tune.pareto import hypervolume, pareto_front, range_hypervolume
from nas_tune.report.plots import save_figure
from nas_tune.report.summary import completed_trials
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.search.store import ResultsStore
from nas_tune.select import pick
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
SST2_TRAIN = 8000  # SST-2 has 67k training sentences: subsampled so it fits next to the other tasks


@dataclass
class MethodRun:
    """One method on one task and seed: its scored rows and what it cost."""

    method: str
    seed: int
    rows: pd.DataFrame  # baseline-style rows: error, params, test_*, latency_seconds
    finetune_seconds: float
    search_seconds: float


def rows_of(store: ResultsStore) -> pd.DataFrame:
    return completed_trials(store)


def search_wall(store: ResultsStore) -> float:
    frame = completed_trials(store)
    return float(frame["end_time"].max() - frame["start_time"].min())


def grid_costs(store: ResultsStore) -> tuple[float, float]:
    """(fine-tuning, pruning) seconds of a baseline run over its whole grid."""
    frame = rows_of(store)
    finetune = float(frame["finetune_seconds"].sum()) if "finetune_seconds" in frame else 0.0
    return finetune, float(store.read_metadata().get("prepare_seconds", 0.0) + frame["prune_seconds"].sum())


class TaskBench:
    def __init__(self, task: str, args: argparse.Namespace, work: Path):
        self.task, self.args, self.work = task, args, work
        train_cap = args.max_train_samples or (SST2_TRAIN if task == "sst2" else None)
        self.data = DataConfig(
            task,
            data_dir=os.environ.get("GLUE_DIR"),
            max_train_samples=train_cap,
            max_validation_samples=args.max_validation_samples,
            max_test_samples=args.max_test_samples,
        )
        self.settings = BaselineSettings(
            budgets=tuple(float(b) for b in args.budgets.split(",")),
            num_samples=args.num_samples,
            tune_samples=args.tune_samples,
            batch_size=args.batch_size,
            lr=args.lr,
        )

    def finetune(
        self, model: str | None, strategy: str, seed: int, name: str, *, epochs: int | None = None, **options
    ) -> tuple[Path, float]:
        """Fine-tune into work/name; the seconds are the whole call's wall time (loading and reordering included).
        `options`: FinetuneConfig fields (head_init, max_steps) and finetune_supernet's (reorder, init_from, teacher)."""
        output = self.work / name
        config_keys = {"head_init", "max_steps", "sampling", "min_params", "search_space"}
        config = FinetuneConfig(
            strategy=strategy,
            epochs=epochs or self.args.epochs,
            batch_size=self.args.batch_size,
            lr=self.args.lr,
            seed=seed,
            **{k: v for k, v in options.items() if k in config_keys},
        )
        start = time.perf_counter()
        finetune_supernet(
            model,
            self.data,
            config,
            output,
            max_seq_length=self.args.max_seq_length,
            pooling=self.args.pooling,
            show_progress=False,
            **{k: v for k, v in options.items() if k not in config_keys},
        )
        return output, time.perf_counter() - start

    def baseline(self, name: str, model: str | None, seed: int, label: str | None = None, **overrides) -> ResultsStore:
        settings = BaselineSettings(**{**vars(self.settings), "seed": seed, **overrides})
        pooling = self.args.pooling if model == self.args.model else "auto"  # a fine-tuned model keeps its own
        inputs = load_inputs(model, self.data, max_seq_length=self.args.max_seq_length, seed=seed, pooling=pooling)
        return run_baseline(
            BASELINES[name](inputs, settings), self.work / f"{label or name}-{seed}", show_progress=False
        )

    def nas(
        self, checkpoint: Path, seed: int, label: str, finetune_seconds: float, *, repair: bool = False
    ) -> list[MethodRun]:
        """Search the super-network and score its front (and the repaired front): one run per variant."""
        run = self.work / f"{label}-search-{seed}"
        search_settings = SearchSettings(searcher=self.args.searcher, num_trials=self.args.num_trials, seed=seed)
        store, _ = search_checkpoint(checkpoint, run, search_settings, show_progress=False)
        search = search_wall(store)
        settings = BaselineSettings(**{**vars(self.settings), "seed": seed})
        front = score_front(run, self.work / f"{label}-front-{seed}", settings=settings, show_progress=False)
        runs = [MethodRun(label, seed, rows_of(front), finetune_seconds, search)]
        if repair:
            repaired = score_front(
                run, self.work / f"{label}-repair-{seed}", repair=True, settings=settings, show_progress=False
            )
            runs.append(
                MethodRun("nas+repair", seed, rows_of(repaired), finetune_seconds, search + grid_costs(repaired)[1])
            )
        return runs

    def unpruned(self, checkpoint: Path) -> dict[str, float]:
        """Test metric and latency of the standard fine-tuned model: the reference every method is held to;
        `at_chance` (1.0) when it is no better than the task's trivial predictor on the test split."""
        inputs = load_inputs(str(checkpoint), self.data, max_seq_length=self.args.max_seq_length)
        model, adapter = inputs.loaded.model, inputs.loaded.adapter
        full = SubNetwork.full(adapter.shape(model))
        measured = Scorer(inputs).measure(adapter.extract(model, full).eval(), full)
        trivial = trivial_predictor(inputs.task, inputs.test.labels.numpy())
        return {**measured, "at_chance": float(measured["test_error"] >= trivial.metrics["error"])}

    def run(self, methods: list[str], seed: int) -> tuple[list[MethodRun], dict[str, float]]:
        """Every method for one seed, and the unpruned standard fine-tuned model's test metric and latency."""
        runs = []
        log(f"{self.task} seed {seed}: standard fine-tuning")
        standard, standard_seconds = self.finetune(self.args.model, "standard", seed, f"standard-{seed}")
        reference = self.unpruned(standard)
        for name in ("rfp", "importance"):
            if name in methods:
                log(f"{self.task} seed {seed}: {name}")
                store = self.baseline(name, str(standard), seed)
                runs.append(MethodRun(name, seed, rows_of(store), standard_seconds, grid_costs(store)[1]))
        if "rfp_long" in methods:
            log(f"{self.task} seed {seed}: rfp on a standard model fine-tuned for {self.args.long_epochs} epochs")
            longer, seconds = self.finetune(
                self.args.model, "standard", seed, f"standard-long-{seed}", epochs=self.args.long_epochs
            )
            store = self.baseline("rfp", str(longer), seed, label="rfp_long")
            runs.append(MethodRun("rfp_long", seed, rows_of(store), seconds, grid_costs(store)[1]))
        if "layer_drop" in methods:
            log(f"{self.task} seed {seed}: layer_drop")
            store = self.baseline("layer_drop", self.args.model, seed, epochs=self.args.epochs)
            runs.append(MethodRun("layer_drop", seed, rows_of(store), *grid_costs(store)))
        if "standard_nas" in methods:
            log(f"{self.task} seed {seed}: standard_nas")
            search = SearchSettings(searcher=self.args.searcher, num_trials=self.args.standard_nas_trials, seed=seed)
            store = self.baseline(
                "standard_nas", self.args.model, seed, epochs=self.args.standard_nas_epochs, search=search
            )
            frame = rows_of(store)
            training = float(frame["finetune_seconds"].sum())
            runs.append(MethodRun("standard_nas", seed, frame, training, search_wall(store) - training))
        supernets = {  # label -> (model, finetune_supernet options, seconds spent before it)
            "nas_old": (self.args.model, {"head_init": "zero"}, 0.0),
            "nas": (self.args.model, {}, 0.0),
            "nas+reorder": (self.args.model, {"reorder": "importance"}, 0.0),
            "two_stage": (
                self.args.model,
                {"init_from": str(standard), "teacher": str(standard), "max_steps": self.args.two_stage_steps},
                standard_seconds,
            ),
            "two_stage+reorder": (
                self.args.model,
                {
                    "init_from": str(standard),
                    "teacher": str(standard),
                    "reorder": "importance",
                    "max_steps": self.args.two_stage_steps,
                },
                standard_seconds,
            ),
            # sizes drawn evenly between --min-params and full size instead of uniformly over the space
            "two_stage+reorder+stratified": (
                self.args.model,
                {
                    "init_from": str(standard),
                    "teacher": str(standard),
                    "reorder": "importance",
                    "max_steps": self.args.two_stage_steps,
                    "sampling": "stratified",
                    "min_params": self.args.min_params,
                },
                standard_seconds,
            ),
            # the same in the `medium` space: per-layer heads and neurons, every layer kept (as rfp keeps them)
            "two_stage+reorder+medium": (
                self.args.model,
                {
                    "init_from": str(standard),
                    "teacher": str(standard),
                    "reorder": "importance",
                    "max_steps": self.args.two_stage_steps,
                    "search_space": "medium",
                },
                standard_seconds,
            ),
        }
        for label, (model, options, before) in supernets.items():
            if label in methods:
                log(f"{self.task} seed {seed}: {label} ({self.args.strategy}, {self.args.searcher})")
                supernet, seconds = self.finetune(
                    model, self.args.strategy, seed, f"supernet-{label}-{seed}", **options
                )
                runs.extend(
                    self.nas(supernet, seed, label, before + seconds, repair=label == "nas" and "nas+repair" in methods)
                )
        return runs, reference


def summarise(run: MethodRun, metric: str, reference: float, at_chance: bool = False) -> dict[str, float]:
    """The table's measures for one run: its validation-chosen Pareto set, reported on the test split.
    `at_chance`: the unpruned reference learnt nothing, so "within x % of it" means nothing (the reductions are NaN)."""
    front = pareto_front(run.rows, ["error", "params"])
    test = f"test_{metric}"
    points = np.clip(front[["test_error", "params"]].to_numpy(dtype=float), 0.0, 1.0)

    def max_reduction(tolerance: float) -> float:
        if at_chance:
            return float("nan")
        kept = front[front[test] >= (1 - tolerance) * reference]
        return float(1 - kept["params"].min()) if len(kept) else 0.0

    def at(budget: float, column: str) -> float:
        try:
            return float(pick(run.rows, max_params=budget)[column])
        except UserError:  # nothing that small
            return float("nan")

    return {
        "hv": hypervolume(points),
        "hv@20": range_hypervolume(points, [0.0, 0.2]),
        "max_red@1": max_reduction(0.01),
        "max_reduction": max_reduction(0.05),
        "max_red@10": max_reduction(0.10),
        "test@75": at(0.75, test),
        "test@50": at(0.5, test),
        "test@25": at(0.25, test),
        "ms@50": 1000 * at(0.5, "latency_seconds"),
        "finetune_s": run.finetune_seconds,
        "search_s": run.search_seconds,
        "total_s": run.finetune_seconds + run.search_seconds,
        "models": len(run.rows),
    }


def plot_fronts(points: pd.DataFrame, task: str, metric: str, reference: float, path: Path) -> None:
    """Each method's validation-chosen front on the test split, for the task's first seed."""
    figure = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    points = points[points.task == task]
    seed = points["seed"].min()
    for method, front in points[points.seed == seed].groupby("method", sort=False):
        front = front.sort_values("params")
        axes.plot(front["params"], front[f"test_{metric}"], marker="o", markersize=3, linewidth=1, label=method)
    axes.axhline(0.95 * reference, color="grey", linestyle="--", linewidth=0.8, label="95 % of unpruned")
    axes.set(
        xlabel="fraction of layer parameters kept",
        ylabel=f"test {metric}",
        title=f"{task}: validation-chosen Pareto sets on the test split (seed {seed})",
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(figure, path)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


METHODS = [
    "rfp",
    "rfp_long",
    "importance",
    "layer_drop",
    "standard_nas",
    "nas_old",
    "nas",
    "nas+repair",
    "nas+reorder",
    "two_stage",
    "two_stage+reorder",
    "two_stage+reorder+stratified",
    "two_stage+reorder+medium",
]  # the table's order


def write_results(
    name: str, rows: list[dict], points: list[dict], argv: list[str] | None, args: argparse.Namespace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-task table (mean over seeds), its markdown, every run, every front point, and the command(s).
    With --update, this run's (task, method, seed) rows replace those of the earlier results and join the rest."""
    runs_frame, points_frame = pd.DataFrame(rows), pd.DataFrame(points)
    commands = ["python benchmarks/paper_comparison.py " + " ".join(argv or sys.argv[1:])]
    if args.update and (RESULTS / f"{name}_runs.csv").is_file():
        key = ["task", "method", "seed"]
        redone = set(runs_frame[key].itertuples(index=False, name=None))

        def kept(earlier: pd.DataFrame) -> pd.DataFrame:
            return earlier[[k not in redone for k in earlier[key].itertuples(index=False, name=None)]]

        runs_frame = pd.concat([kept(pd.read_csv(RESULTS / f"{name}_runs.csv")), runs_frame], ignore_index=True)
        points_frame = pd.concat([kept(pd.read_csv(RESULTS / f"{name}_points.csv")), points_frame], ignore_index=True)
        earlier = read_json(RESULTS / f"{name}.json")
        commands = list(dict.fromkeys([c for c in earlier.get("commands", [earlier.get("command")]) if c] + commands))
    runs_frame = runs_frame.sort_values(
        ["task", "method", "seed"], key=lambda c: c.map(METHODS.index) if c.name == "method" else c
    )
    table = (
        runs_frame.groupby(["task", "method"], sort=False).mean(numeric_only=True).drop(columns="seed").reset_index()
    )
    table["seeds"] = runs_frame.groupby(["task", "method"], sort=False).size().to_numpy()
    table = table.round(
        {
            "hv": 4,
            "hv@20": 4,
            "max_red@1": 3,
            "max_reduction": 3,
            "max_red@10": 3,
            "test@75": 4,
            "test@50": 4,
            "test@25": 4,
            "ms@50": 1,
            "unpruned_test": 4,
            "unpruned_ms": 1,
            "finetune_s": 0,
            "search_s": 1,
            "total_s": 0,
            "models": 1,
        }
    )
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.csv", table.to_csv(index=False))
    atomic_write_text(RESULTS / f"{name}.md", markdown(table))
    atomic_write_text(RESULTS / f"{name}_runs.csv", runs_frame.to_csv(index=False))
    atomic_write_text(RESULTS / f"{name}_points.csv", points_frame.to_csv(index=False))
    atomic_write_json(RESULTS / f"{name}.json", {"commands": commands, "settings": vars(args)})
    return runs_frame, points_frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "cola", "stsb", "sst2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--model", help="pre-trained model folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS, help="nas+repair needs nas")
    parser.add_argument("--max-train-samples", type=int, help=f"default: all (SST-2: {SST2_TRAIN})")
    parser.add_argument("--max-validation-samples", type=int, default=2048)
    parser.add_argument("--max-test-samples", type=int)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="standard fine-tuning, super-networks and layer_drop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--lr", type=float, default=FinetuneConfig.lr, help="standard fine-tuning, super-networks and layer_drop"
    )
    parser.add_argument("--strategy", default="sandwich_kd")
    parser.add_argument("--searcher", default="local_search")
    parser.add_argument(
        "--num-trials", type=int, default=100, help="weight-sharing search evaluations (the paper's budget)"
    )
    parser.add_argument("--standard-nas-trials", type=int, default=20)
    parser.add_argument("--standard-nas-epochs", type=int, default=1)
    parser.add_argument(
        "--two-stage-steps", type=int, default=40, help="super-network steps after the standard fine-tuning"
    )
    parser.add_argument(
        "--min-params", type=float, default=0.2, help="two_stage+reorder+stratified: smallest sampled size"
    )
    parser.add_argument(
        "--pooling",
        default="auto",
        choices=["auto", "token", "mean"],
        help="what every fresh task head reads (auto: mean for the bundled MiniLM); the two-stage recipes and rfp keep "
        "the standard model's",
    )
    parser.add_argument("--long-epochs", type=int, default=2, help="rfp_long: epochs of its standard fine-tuning")
    parser.add_argument("--budgets", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--num-samples", type=int, default=2048, help="rfp / importance / reorder examples")
    parser.add_argument("--tune-samples", type=int, default=256, help="rfp / repair least-squares examples")
    parser.add_argument("--tag", default="", help="suffix for the result files (e.g. smoke)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-run only the given --tasks/--methods/--seeds and merge them into the existing result files (same settings)",
    )
    args = parser.parse_args(argv)
    quiet_libraries()
    name = "paper_comparison" + (f"_{args.tag}" if args.tag else "")
    rows, points, references = [], [], {}
    with tempfile.TemporaryDirectory(prefix="nas-tune-paper-") as tmp:
        for seed in args.seeds:  # seed-major: a stopped run has every task at the first seed
            for task in args.tasks:
                runs, reference = TaskBench(task, args, Path(tmp) / task).run(args.methods, seed)
                metric = get_task(task).metric
                references.setdefault(task, []).append(reference[f"test_{metric}"])
                for run in runs:
                    rows.append(
                        {
                            "task": task,
                            "method": run.method,
                            "seed": run.seed,
                            "unpruned_test": reference[f"test_{metric}"],
                            "unpruned_ms": 1000 * reference["latency_seconds"],
                            **summarise(run, metric, reference[f"test_{metric}"], bool(reference["at_chance"])),
                        }
                    )
                    front = pareto_front(run.rows, ["error", "params"])
                    points.extend(
                        {"task": task, "method": run.method, "seed": run.seed, **r}
                        for r in front[["params", "error", "test_error", f"test_{metric}", "latency_seconds"]].to_dict(
                            "records"
                        )
                    )
                    log(f"{task} {run.method} seed {run.seed}: {rows[-1]}")
                _, merged_points = write_results(
                    name, rows, points, argv, args
                )  # after every task and seed: a stopped run keeps it
                plot_fronts(
                    merged_points, task, metric, float(np.mean(references[task])), RESULTS / f"{name}_{task}.png"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
