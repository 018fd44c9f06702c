"""Report figures: Pareto scatter and hypervolume curves, written atomically as PNG.

Figures are built with matplotlib's object API (Figure + Agg canvas), never pyplot, so no window
opens, no global backend is switched and nothing leaks between calls, even on headless machines.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_bytes
from nas_tune.pareto import pareto_front


def _new_axes(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(6.4, 4.8), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return figure, axes


def save_figure(figure: Figure, path: str | Path) -> Path:
    """PNG, written atomically: an interrupted run never leaves half a plot."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _annotate(axes: Axes, rows: pd.DataFrame, x: str, y: str, label_column: str | None) -> None:
    labels = rows[label_column] if label_column is not None else rows.index.to_series()
    for (_, row), label in zip(rows.iterrows(), labels):
        axes.annotate(str(label), (row[x], row[y]), xytext=(4, 4), textcoords="offset points", fontsize=8)


def plot_pareto(frame: pd.DataFrame, x: str, y: str, path: str | Path, **options) -> Path:
    """`pareto_figure` (same keyword options) saved as a PNG at `path`."""
    return save_figure(pareto_figure(frame, x, y, **options), path)


def pareto_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    label_column: str | None = None,
    title: str = "",
    highlight: pd.DataFrame | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """All trials as light points and the front (both axes minimised) as a step line; axes are labelled
    `xlabel`/`ylabel` (in words, e.g. "fraction of layer parameters kept"), or the column names.

    `highlight` rows (e.g. exported models) are marked and annotated with `label_column`, or their
    index when it is None; without `highlight`, a given `label_column` annotates the front points.
    """
    needed = [x, y] + ([label_column] if label_column is not None else [])
    for table in [frame] + ([highlight] if highlight is not None else []):
        missing = [column for column in needed if column not in table.columns]
        if missing:
            raise UserError(
                f"Cannot plot: column(s) {missing} are not in the results (columns: {list(table.columns)}); "
                "pick existing columns."
            )
    trials = frame.dropna(subset=[x, y])
    front = pareto_front(trials, [y, x])
    figure, axes = _new_axes(title)
    axes.scatter(trials[x], trials[y], s=12, color="tab:gray", alpha=0.35, label=f"trials ({len(trials)})")
    axes.step(front[x], front[y], where="post", marker="o", color="tab:blue", label=f"Pareto front ({len(front)})")
    if highlight is not None:
        axes.scatter(highlight[x], highlight[y], s=90, marker="*", color="tab:red", zorder=3, label="selected")
        _annotate(axes, highlight, x, y, label_column)
    elif label_column is not None:
        _annotate(axes, front, x, y, label_column)
    axes.set_xlabel(xlabel or x)
    axes.set_ylabel(ylabel or y)
    axes.legend(loc="best")
    return figure


def plot_hypervolume(traces: dict[str, np.ndarray], path: str | Path, **options) -> Path:
    """`hypervolume_figure` (same keyword options) saved as a PNG at `path`."""
    return save_figure(hypervolume_figure(traces, **options), path)


def hypervolume_figure(
    traces: dict[str, np.ndarray],
    *,
    xlabel: str = "evaluations",
    x_values: dict[str, np.ndarray] | None = None,
    title: str = "",
) -> Figure:
    """One best-so-far hypervolume curve per named trace, against 1..N or the given x values
    (e.g. wall-clock seconds); when x_values is given it must cover every trace."""
    figure, axes = _new_axes(title)
    for name, trace in traces.items():
        values = np.asarray(trace, dtype=float)
        if x_values is None:
            xs = np.arange(1, len(values) + 1)
        elif name in x_values:
            xs = np.asarray(x_values[name], dtype=float)
        else:
            raise ValueError(f"x_values has no entry for trace {name!r}")
        if xs.shape != values.shape:
            raise ValueError(f"trace {name!r} has {values.shape} values but {xs.shape} x values")
        axes.step(xs, values, where="post", label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("hypervolume")
    if traces:
        axes.legend(loc="lower right")
    return figure
