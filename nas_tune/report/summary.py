"""Report of a run: the Pareto table, `pareto.csv`, `pareto.png`, `hypervolume.png` and `report.html`.

Everything is regenerated from what the run wrote (trials, the pipeline's test metrics and picks), so running
`nas-tune report` on a pipeline's folder rewrites its files with the same content, never with less.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nas_tune.data import GLUE_TASKS
from nas_tune.data.tasks import LANGUAGE_MODELLING_METRIC
from nas_tune.errors import UserError
from nas_tune.io import atomic_write_text
from nas_tune.pareto import hypervolume, hypervolume_trace, normalise_objectives, pareto_front
from nas_tune.report.html import PARAMS_LABEL, write_html_report
from nas_tune.report.picks import pick_highlights, picks_frame
from nas_tune.report.plots import plot_hypervolume, plot_pareto
from nas_tune.report.run_folder import RunFolder, read_test_metrics, resolve_run_folder
from nas_tune.search.store import ResultsStore

TABLE_COLUMNS = ["trial_id", "params", "total_fraction", "layer_params", "error", "latency", "test_error"]
METRIC_WORDS = {
    "accuracy": "accuracy",
    "f1": "F1",
    "matthews_correlation": "Matthews correlation",
    "spearman": "Spearman correlation",
    "pearson": "Pearson correlation",
    "perplexity": "1/perplexity",
}


@dataclass
class RunReport:
    folder: RunFolder
    metadata: dict
    trials: pd.DataFrame  # completed full-fidelity trials, with test_* columns where the run scored them
    front: pd.DataFrame
    objectives: list[str]
    hypervolume: float
    metric: str  # the task's primary metric ("accuracy", "spearman", ...)
    picks: pd.DataFrame  # one row per exported pick of a pipeline run (see report.picks); empty otherwise
    files: list[Path]

    @property
    def label(self) -> str:
        """How plots and tables name the run: its folder and its method."""
        return f"{self.folder.name} ({self.metadata.get('searcher', 'search')})"

    def error_label(self, split: str) -> str:
        return f"{split} error (1 - {METRIC_WORDS.get(self.metric, self.metric)})"

    def hypervolume_over_time(self) -> tuple[np.ndarray, np.ndarray]:
        """(seconds since the run's first trial started, best-so-far hypervolume) in order of completion."""
        ordered = self.trials.sort_values("end_time")
        seconds = ordered["end_time"].to_numpy(dtype=float) - ordered["start_time"].min()
        return seconds, hypervolume_trace(normalise_objectives(ordered, self.objectives))

    def unpruned(self) -> pd.DataFrame:
        """The trial of the full model (all layer parameters kept), when the run evaluated it."""
        return self.trials[self.trials["params"] >= 1.0 - 1e-9].head(1)


def completed_trials(store: ResultsStore) -> pd.DataFrame:
    frame = store.to_frame()
    if frame.empty:
        return frame
    return frame[(frame["status"] == "completed") & (frame["fidelity"] >= 1.0)].reset_index(drop=True)


def load_run(run_dir: str | Path) -> tuple[ResultsStore, dict, pd.DataFrame]:
    """The search store, metadata and completed trials of a pipeline or search run folder."""
    return _load_search(resolve_run_folder(run_dir))


def _load_search(folder: RunFolder) -> tuple[ResultsStore, dict, pd.DataFrame]:
    store = ResultsStore(folder.search)
    metadata = store.read_metadata()
    if metadata is None:
        raise UserError(
            f"{folder.search} has no metadata.json; pass the --output of the pipeline, `nas-tune search` or `nas-tune baseline`."
        )
    trials = completed_trials(store)
    if trials.empty:
        raise UserError(f"{folder.search} has no completed trials yet; run or resume the search first.")
    return store, metadata, trials


def with_test_metrics(trials: pd.DataFrame, search_dir: Path) -> pd.DataFrame:
    """Add the pipeline's test-split metrics (test_metrics.json) as test_* columns; rows that already carry
    them (baselines score the test split themselves) keep theirs."""
    scored = read_test_metrics(search_dir)
    if not scored:
        return trials
    tests = pd.DataFrame.from_dict(scored, orient="index").add_prefix("test_")
    merged = trials.copy()
    for column in tests.columns:
        values = merged["trial_id"].astype(int).map(tests[column])
        merged[column] = merged[column].fillna(values) if column in merged.columns else values
    return merged


def primary_metric(task_name: str, columns) -> str:
    """The metric a run's error is 1 minus: the GLUE task's, or for custom data the one its rows hold
    (language modelling: perplexity, the error being 1 - 1/perplexity)."""
    if task_name in GLUE_TASKS:
        return GLUE_TASKS[task_name].metric
    if LANGUAGE_MODELLING_METRIC in columns:
        return LANGUAGE_MODELLING_METRIC
    return "spearman" if "spearman" in columns else "accuracy"


def load_report(run: str | Path) -> RunReport:
    """Everything a report shows, read from the run folder; nothing is written."""
    folder = resolve_run_folder(run)
    _, metadata, trials = _load_search(folder)
    trials = with_test_metrics(trials, folder.search)
    objectives = metadata["objectives"]
    points = normalise_objectives(trials, objectives)
    metric = primary_metric(metadata.get("task", ""), trials.columns)
    return RunReport(
        folder,
        metadata,
        trials,
        pareto_front(trials, objectives),
        objectives,
        hypervolume(points),
        metric,
        picks_frame(folder.summary, metric),
        [],
    )


def write_report_files(report: RunReport) -> list[Path]:
    """pareto.csv (every column, test metrics included) and the two PNGs, with the picks marked."""
    search_dir = report.folder.search
    csv_path = search_dir / "pareto.csv"
    atomic_write_text(csv_path, report.front.to_csv(index=False))
    highlight = pick_highlights(report.picks, report.trials)
    title = f"{report.metadata.get('task', '')}: {report.metadata.get('searcher', '')}"
    pareto_png = plot_pareto(
        report.trials,
        "params",
        "error",
        search_dir / "pareto.png",
        title=title,
        highlight=highlight if len(highlight) else None,
        xlabel=PARAMS_LABEL,
        ylabel=report.error_label("validation"),
    )
    _, trace = report.hypervolume_over_time()
    hv_png = plot_hypervolume(
        {report.metadata.get("searcher", "search"): trace},
        search_dir / "hypervolume.png",
        title="hypervolume over evaluations",
    )
    return [csv_path, pareto_png, hv_png]


def write_report(report: RunReport) -> RunReport:
    """Write a loaded run's report files and its report.html (in the top-level folder); `report.files` lists them."""
    report.files = [*write_report_files(report), write_html_report([report], report.folder.root / "report.html")]
    return report


def report_run(run: str | Path) -> RunReport:
    """Regenerate a run's report files from what it holds and return what they show."""
    return write_report(load_report(run))


def _number(value: float) -> str:
    """4 decimals; a ruined language model's perplexity (1e40) in scientific notation, not as 45 digits."""
    if np.isnan(value):
        return ""
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"


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
            shown[column] = shown[column].map(_number)
    return shown.to_string(index=False)
