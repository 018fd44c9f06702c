"""Report of a search run: the Pareto table, `pareto.csv`, `pareto.png` and `hypervolume.png`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_text
from nas_tune.pareto import hypervolume, hypervolume_trace, normalise_objectives, pareto_front
from nas_tune.report.plots import plot_hypervolume, plot_pareto
from nas_tune.search.store import ResultsStore

TABLE_COLUMNS = ["trial_id", "params", "total_fraction", "layer_params", "error", "latency", "test_error"]


@dataclass
class RunReport:
    trials: pd.DataFrame  # completed full-fidelity trials
    front: pd.DataFrame
    objectives: list[str]
    hypervolume: float
    files: list[Path]


def completed_trials(store: ResultsStore) -> pd.DataFrame:
    frame = store.to_frame()
    if frame.empty:
        return frame
    return frame[(frame["status"] == "completed") & (frame["fidelity"] >= 1.0)].reset_index(drop=True)


def load_run(run_dir: str | Path) -> tuple[ResultsStore, dict, pd.DataFrame]:
    store = ResultsStore(run_dir)
    metadata = store.read_metadata()
    if metadata is None:
        raise UserError(f"{run_dir} is not a search run folder (no metadata.json); pass the --output of `nas-tune search`.")
    trials = completed_trials(store)
    if trials.empty:
        raise UserError(f"{run_dir} has no completed trials yet; run or resume the search first.")
    return store, metadata, trials


def report_run(run_dir: str | Path, *, title: str = "") -> RunReport:
    store, metadata, trials = load_run(run_dir)
    objectives = metadata["objectives"]
    front = pareto_front(trials, objectives)
    run_dir = Path(run_dir)
    csv_path = run_dir / "pareto.csv"
    atomic_write_text(csv_path, front.to_csv(index=False))
    points = normalise_objectives(trials.sort_values("end_time"), objectives)
    files = [
        csv_path,
        plot_pareto(trials, "params", "error", run_dir / "pareto.png", title=title or f"{metadata.get('task', '')} {metadata.get('searcher', '')}"),
        plot_hypervolume({metadata.get("searcher", "search"): hypervolume_trace(points)}, run_dir / "hypervolume.png", title="hypervolume over evaluations"),
    ]
    return RunReport(trials, front, objectives, hypervolume(points), files)


def format_table(front: pd.DataFrame, metric: str | None = None) -> str:
    """A fixed-width Pareto table for the terminal (params as fractions of the layer parameters)."""
    columns = [c for c in TABLE_COLUMNS if c in front.columns]
    if metric and metric in front.columns:
        columns.insert(columns.index("error") + 1, metric)
    if metric and f"test_{metric}" in front.columns:
        columns.append(f"test_{metric}")
    shown = front[columns].copy()
    for column in columns:
        if column in ("trial_id", "layer_params"):
            shown[column] = shown[column].map(lambda v: f"{int(v):,}")
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "" if np.isnan(v) else f"{v:.4f}")
    return shown.to_string(index=False)
