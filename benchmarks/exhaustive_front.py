"""Search quality against the limit: every searcher vs. the exhaustive Pareto front of one super-network.

A tabulated benchmark (like Syne Tune's blackbox repository):
1. train one small MiniLM super-network (`sandwich_kd`, cached in --workdir); `--recipe two_stage` first
   fine-tunes a standard model, sorts its heads/neurons by importance and distils the super-network from it
   (the recipe whose sub-networks learn, benchmarks/paper_comparison.py);
2. evaluate every config of the `small` space on a coarse unit grid (all layers x all heads x
   --unit-levels FFN widths) on a fixed validation subset, at full fidelity and at the validation
   fractions MO-ASHA asks for; the table is a results store, appended after every evaluation, so
   a killed run continues where it stopped;
3. the exhaustive front and its hypervolume (error vs. layer-parameter fraction, reference (1, 1));
4. replay every searcher against the table (the real driver and searcher, the trial function a
   table lookup) over --seeds: HV(searcher) / HV(exhaustive) after each budget, and the
   evaluations needed to reach 0.95 and 0.99 of it. Searchers search the grid itself (a config
   space with the grid's values), so every config they propose is in the table.

Evaluations count full-fidelity-equivalents: a MO-ASHA trial on 1/9 of the validation data counts
1/9. Only full-fidelity results add hypervolume. One worker, so the searcher sees each result
before its next suggestion and a budget of 25 is the first 25 evaluations of the run to 100.

    GLUE_DIR=../shared/data/glue python benchmarks/exhaustive_front.py [--stage table|replay|all]
    GLUE_DIR=../shared/data/glue python benchmarks/exhaustive_front.py --recipe two_stage --lr 1e-4 \
        --workdir runs/exhaustive_front_two_stage --tag two_stage      # results: exhaustive_front_two_stage.*
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from syne_tune.config_space import ordinal, randint

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.evaluate.setup import EvaluationSetup, checkpoint_evaluator, read_checkpoint
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.pareto import (
    hypervolume,
    hypervolume_trace,
    normalise_objectives,
    pareto_mask,
)
from nas_tune.search.driver import SearchDriver, SearchSettings, outcome_record
from nas_tune.search.executors import LocalExecutor, TrialRequest, run_trial
from nas_tune.search.executors import TrialFunction as TrialCallable
from nas_tune.search.objectives import TrialFunction
from nas_tune.search.searchers import SEARCHERS, make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import config_key
from nas_tune.supernet import SUPERNET_FILE, FinetuneConfig, read_supernet_meta
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
OBJECTIVES = ["error", "params"]
# MO-ASHA's validation fractions with make_searcher's defaults (min 0.1, max 1, reduction factor 3).
MOASHA_FIDELITIES = (1 / 9, 3 / 9, 1.0)
TARGETS = (0.95, 0.99)


@dataclass(frozen=True)
class UnitGrid:
    """The `small` space with the FFN width restricted to `levels` evenly spaced values."""

    num_layers: int
    num_heads: int
    ffn_size: int
    levels: int

    @property
    def units(self) -> list[int]:
        return [round(self.ffn_size * k / self.levels) for k in range(1, self.levels + 1)]

    def config_space(self) -> dict:
        return {
            "num_layers": randint(1, self.num_layers),
            "num_heads": randint(1, self.num_heads),
            "num_units": ordinal(self.units, kind="nn"),
        }

    def configs(self) -> list[dict]:
        return [
            {"num_layers": n, "num_heads": h, "num_units": u}
            for n, h, u in itertools.product(range(1, self.num_layers + 1), range(1, self.num_heads + 1), self.units)
        ]

    def largest(self) -> dict:
        return {"num_layers": self.num_layers, "num_heads": self.num_heads, "num_units": self.units[-1]}

    def smallest(self) -> dict:
        return {"num_layers": 1, "num_heads": 1, "num_units": self.units[0]}


def grid_of(setup: EvaluationSetup, levels: int) -> UnitGrid:
    shape = setup.evaluator.search_space.shape
    return UnitGrid(shape.num_layers, shape.num_heads, shape.ffn_size, levels)


def _table_key(config: dict, fidelity: float) -> tuple[str, float]:
    return config_key(config), round(float(fidelity), 9)


def tabulate(
    setup: EvaluationSetup, grid: UnitGrid, store: ResultsStore, fidelities=MOASHA_FIDELITIES, *, log_every: int = 50
) -> None:
    """Evaluate every grid config at every fidelity that is not in `store` yet, full fidelity first."""
    records = store.records()
    done = {_table_key(r.config, r.fidelity) for r in records if r.status == "completed"}
    function = TrialFunction(setup.evaluator, OBJECTIVES)
    todo = [(c, f) for f in sorted(fidelities, reverse=True) for c in grid.configs() if _table_key(c, f) not in done]
    next_id, start = len(records), time.perf_counter()
    for count, (config, fidelity) in enumerate(todo, start=1):
        outcome = run_trial(function, TrialRequest(next_id, config, fidelity), "exhaustive")
        store.append(outcome_record(outcome))
        next_id += 1
        if count % log_every == 0 or count == len(todo):
            rate = (time.perf_counter() - start) / count
            print(
                f"table: {count}/{len(todo)} evaluations, {rate:.2f} s each, ~{rate * (len(todo) - count) / 60:.0f} min left",
                file=sys.stderr,
                flush=True,
            )


class TabulatedTrial:
    """A trial function that looks results up in the exhaustive table instead of evaluating."""

    def __init__(self, store: ResultsStore):
        self._table = {_table_key(r.config, r.fidelity): r.metrics for r in store.records() if r.status == "completed"}

    def __len__(self) -> int:
        return len(self._table)

    def __call__(self, config: dict, fidelity: float = 1.0) -> dict[str, float]:
        key = _table_key(config, fidelity)
        if key not in self._table:
            raise KeyError(f"{key} is not in the table: the searcher left the grid or the table is incomplete")
        return dict(self._table[key])


def run_search(
    name: str, grid: UnitGrid, function: TrialCallable, num_trials: int, seed: int, folder: Path
) -> pd.DataFrame:
    """The driver loop of `search_checkpoint` (largest and smallest first) on the grid, one worker."""
    searcher = make_searcher(
        name, grid.config_space(), OBJECTIVES, seed=seed, initial_configs=[grid.largest(), grid.smallest()]
    )
    settings = SearchSettings(searcher=name, num_trials=num_trials, seed=seed)
    with LocalExecutor(function, 1) as executor:
        return SearchDriver(ResultsStore(folder), searcher, executor, settings, show_progress=False).run()


def front_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The full-fidelity Pareto set of a trial table, one row per point, sorted by size."""
    full = frame[(frame["status"] == "completed") & (frame["fidelity"] >= 1.0)]
    front = full[pareto_mask(normalise_objectives(full, OBJECTIVES))]
    return front.sort_values(["params", "error"])[
        ["config_num_layers", "config_num_heads", "config_num_units", *OBJECTIVES]
    ].reset_index(drop=True)


def hv_curve(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(evaluations spent, hypervolume so far) after each trial, in trial order."""
    frame = frame[frame["status"] == "completed"].sort_values("trial_id")
    points = normalise_objectives(frame, OBJECTIVES)
    points[frame["fidelity"].to_numpy() < 1.0] = np.nan  # a low-fidelity result costs but adds no volume
    return np.cumsum(frame["fidelity"].to_numpy()), hypervolume_trace(points)


def summarise(
    curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]], exhaustive_hv: float, budgets: list[int]
) -> pd.DataFrame:
    """Per searcher: HV ratio at each budget (mean, std over seeds) and evaluations to reach each target."""
    rows = []
    for searcher in sorted({s for s, _ in curves}):
        seeds = [seed for s, seed in curves if s == searcher]
        row: dict = {"searcher": searcher, "seeds": len(seeds)}
        for budget in budgets:
            ratios = [_at_budget(*curves[searcher, seed], budget) / exhaustive_hv for seed in seeds]
            row[f"hv_ratio@{budget}_mean"], row[f"hv_ratio@{budget}_std"] = (
                float(np.mean(ratios)),
                float(np.std(ratios)),
            )
        for target in TARGETS:
            needed = [_evaluations_to(*curves[searcher, seed], target * exhaustive_hv) for seed in seeds]
            reached = [n for n in needed if n is not None]
            row[f"evals_to_{target}_median"] = float(np.median(reached)) if len(reached) == len(seeds) else None
            row[f"reached_{target}"] = f"{len(reached)}/{len(seeds)}"
        rows.append(row)
    return pd.DataFrame(rows)


def _at_budget(spent: np.ndarray, volume: np.ndarray, budget: int) -> float:
    within = np.flatnonzero(spent <= budget + 1e-9)
    return float(volume[within[-1]]) if len(within) else 0.0


def _evaluations_to(spent: np.ndarray, volume: np.ndarray, target: float) -> float | None:
    reached = np.flatnonzero(volume >= target)
    return float(spent[reached[0]]) if len(reached) else None


def train_supernet(args: argparse.Namespace, checkpoint: Path) -> None:
    """Train once; a finished checkpoint (and two_stage's standard model) in --workdir is reused."""
    data = DataConfig(
        args.dataset,
        data_dir=args.data_dir,
        max_train_samples=args.train_samples,
        max_validation_samples=args.validation_samples,
    )

    def train(folder: Path, config: FinetuneConfig, **options) -> None:
        if not (folder / SUPERNET_FILE).is_file() or read_supernet_meta(folder).get("status") != "completed":
            finetune_supernet(
                None, data, config, folder, max_seq_length=args.max_seq_length, resume=folder.exists(), **options
            )

    config = FinetuneConfig(strategy="sandwich_kd", epochs=args.epochs, batch_size=32, lr=args.lr)
    if args.recipe == "one_stage":
        train(checkpoint, config)
        return
    standard = args.workdir / "standard"
    train(standard, replace(config, strategy="standard"))
    second = replace(config, epochs=1, max_steps=args.second_stage_steps)
    train(checkpoint, second, init_from=str(standard), teacher=str(standard), reorder="importance")


def load_setup(checkpoint: Path, data_dir: str | None) -> EvaluationSetup:
    return checkpoint_evaluator(read_checkpoint(checkpoint), data_dir=data_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("table", "replay", "all"), default="all")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/exhaustive_front"),
        help="checkpoint, table and replays (default: runs/exhaustive_front)",
    )
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument(
        "--recipe",
        choices=("one_stage", "two_stage"),
        default="one_stage",
        help="one_stage: the super-network from the pre-trained model; two_stage: from a standard fine-tuned one, "
        "reordered by importance and distilled from it",
    )
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (two_stage: of the standard model)")
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    parser.add_argument("--second-stage-steps", type=int, default=40, help="two_stage: super-network steps")
    parser.add_argument("--tag", default="", help="suffix of the result files (exhaustive_front_TAG.*)")
    parser.add_argument("--train-samples", type=int, default=1500)
    parser.add_argument("--validation-samples", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--unit-levels", type=int, default=16, help="FFN widths on the grid (default: 16)")
    parser.add_argument("--searchers", nargs="+", default=sorted(SEARCHERS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per searcher (default: 3)")
    parser.add_argument("--budgets", default="25,50,100", help="evaluation budgets (default: 25,50,100)")
    parser.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.searchers) - set(SEARCHERS))
    if unknown:
        raise UserError(f"unknown searcher {unknown[0]!r}; choose from {', '.join(sorted(SEARCHERS))}.")
    try:
        args.budgets = sorted({int(b) for b in args.budgets.split(",")})
    except ValueError:
        raise UserError(f"--budgets must be comma-separated whole numbers, got {args.budgets!r}.") from None
    for name, value in (
        ("--seeds", args.seeds),
        ("--epochs", args.epochs),
        ("--second-stage-steps", args.second_stage_steps),
        ("--lr", args.lr),
        ("--unit-levels", args.unit_levels),
        ("--train-samples", args.train_samples),
        ("--validation-samples", args.validation_samples),
        ("smallest of --budgets", args.budgets[0]),
    ):
        if value <= 0:
            raise UserError(f"{name} must be positive, got {value}.")
    return args


def replay_all(args: argparse.Namespace, grid: UnitGrid, table: ResultsStore) -> None:
    function = TabulatedTrial(table)
    expected = len(grid.configs()) * len(MOASHA_FIDELITIES)
    if len(function) < expected:
        raise UserError(
            f"the table in {table.run_dir} holds {len(function)} of {expected} evaluations; run --stage table first."
        )
    exhaustive = table.to_frame()
    full = exhaustive[exhaustive["fidelity"] >= 1.0]
    exhaustive_hv = hypervolume(normalise_objectives(full, OBJECTIVES))
    front = front_of(exhaustive)
    budget = args.budgets[-1]
    curves, runs = {}, []
    for searcher in args.searchers:
        for seed in range(args.seeds):
            folder = args.workdir / "replay" / f"{searcher}-{seed}"
            shutil.rmtree(folder, ignore_errors=True)  # scratch: a replay always starts fresh, never resumes an old one
            # MO-ASHA trials cost their fidelity: allow enough trials to spend the budget in full-fidelity equivalents.
            trials = budget * len(MOASHA_FIDELITIES) if searcher == "moasha" else budget
            started = time.perf_counter()
            frame = run_search(searcher, grid, function, trials, seed, folder)
            curves[searcher, seed] = hv_curve(frame)
            runs.append(
                {
                    "searcher": searcher,
                    "seed": seed,
                    "trials": len(frame),
                    "seconds": time.perf_counter() - started,
                    "failed": int((frame["status"] == "failed").sum()),
                }
            )
            print(runs[-1], file=sys.stderr, flush=True)
    summary = summarise(curves, exhaustive_hv, args.budgets)
    name = "exhaustive_front" + (f"_{args.tag}" if args.tag else "")
    print(f"exhaustive: {len(full)} configs, front of {len(front)}, hypervolume {exhaustive_hv:.4f}")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.csv", summary.to_csv(index=False))
    atomic_write_text(RESULTS / f"{name}_pareto.csv", front.to_csv(index=False))
    atomic_write_text(
        RESULTS / f"{name}_table.csv", exhaustive.drop(columns=["worker", "error_message"]).to_csv(index=False)
    )
    plot(curves, exhaustive_hv, full, front, RESULTS / f"{name}.png", budget)
    atomic_write_json(
        RESULTS / f"{name}.json",
        {
            "command": " ".join(["python benchmarks/exhaustive_front.py", *(sys.argv[1:])]),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "grid": {
                "num_layers": grid.num_layers,
                "num_heads": grid.num_heads,
                "units": grid.units,
                "configs": len(grid.configs()),
                "fidelities": list(MOASHA_FIDELITIES),
            },
            "exhaustive": {
                "hypervolume": exhaustive_hv,
                "front_size": len(front),
                "mean_eval_seconds": float(full["eval_seconds"].mean()),
                "total_eval_seconds": float(exhaustive["eval_seconds"].sum()),
            },
            "summary": json.loads(summary.to_json(orient="records")),
            "runs": runs,
        },
    )


def plot(curves, exhaustive_hv: float, full: pd.DataFrame, front: pd.DataFrame, path: Path, budget: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nas_tune.report.plots import save_figure

    figure = Figure(figsize=(12, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.scatter(full["params"], full["error"], s=4, color="lightgray", label=f"all {len(full)} grid configs")
    left.step(front["params"], front["error"], where="post", color="black", label=f"exhaustive front ({len(front)})")
    left.set_xlabel("layer-parameter fraction")
    left.set_ylabel("validation error")
    left.legend()
    grid_x = np.linspace(0, budget, 201)
    for searcher in sorted({s for s, _ in curves}):
        ratios = np.array(
            [[_at_budget(*curves[s, seed], x) / exhaustive_hv for x in grid_x] for s, seed in curves if s == searcher]
        )
        line = right.plot(grid_x, ratios.mean(axis=0), label=searcher)[0]
        right.fill_between(grid_x, ratios.min(axis=0), ratios.max(axis=0), color=line.get_color(), alpha=0.15)
    for target in TARGETS:
        right.axhline(target, color="gray", linestyle=":", linewidth=0.8)
    right.set_xlabel("evaluations (full-fidelity equivalents)")
    right.set_ylabel("HV / HV(exhaustive)")
    right.set_ylim(0.5, 1.01)
    right.legend(loc="lower right", fontsize=8)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        quiet_libraries()
        checkpoint = args.workdir / "supernet"
        train_supernet(args, checkpoint)
        setup = load_setup(checkpoint, args.data_dir)
        grid = grid_of(setup, args.unit_levels)
        table = ResultsStore(args.workdir / "table")
        if args.stage in ("table", "all"):
            tabulate(setup, grid, table)
        if args.stage in ("replay", "all"):
            replay_all(args, grid, table)
    except UserError as error:
        print(f"exhaustive_front.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
