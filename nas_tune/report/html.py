"""report.html: one self-contained page to share a run, or to compare several (e.g. a search and its baselines).

Plotly figures (hover shows each trial's config and metrics) with plotly.js embedded once, so the file opens
offline and can be mailed as it is; tables are pandas' escaped HTML. Everything comes from `RunReport`s.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_text, read_json
from nas_tune.report.picks import picks_display
from nas_tune.supernet import SUPERNET_FILE

if TYPE_CHECKING:  # summary.py imports this module to write the page
    from nas_tune.report.summary import RunReport

PARAMS_LABEL = "fraction of layer parameters kept"
HYPERVOLUME_LABEL = "hypervolume (share of the unit box the front dominates)"
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;font-size:12px}.note{color:#555}"""


def _color(index: int) -> str:
    return qualitative.Plotly[index % len(qualitative.Plotly)]


def _hover(rows: pd.DataFrame, report: RunReport, split: str) -> list[str]:
    configs = rows.filter(like="config_")
    error = "error" if split == "validation" else "test_error"
    return [
        f"trial {int(row.trial_id)}<br>{PARAMS_LABEL} {row.params:.3f}<br>{report.error_label(split)} {getattr(row, error):.4f}<br>"
        + ", ".join(f"{key[len('config_') :]}={value:g}" for key, value in config.items() if pd.notna(value))
        for row, (_, config) in zip(rows.itertuples(), configs.iterrows())
    ]


def _axes(figure: go.Figure, title: str, x: str, y: str) -> go.Figure:
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        height=520,
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def pareto_figure(reports: list[RunReport], split: str) -> go.Figure:
    """Validation: every trial and the front. Test: the validation front's sub-networks scored on the test split."""
    figure = go.Figure()
    error = "error" if split == "validation" else "test_error"
    for index, report in enumerate(reports):
        color, name = _color(index), report.label
        rows = report.trials if split == "validation" else report.front
        if error not in rows.columns:  # a plain search has no test metrics
            continue
        rows = rows.dropna(subset=[error])
        if split == "validation":
            figure.add_scatter(
                x=rows["params"],
                y=rows[error],
                mode="markers",
                name=f"{name}: trials",
                hovertext=_hover(rows, report, split),
                hoverinfo="text",
                marker={"color": color, "size": 6, "opacity": 0.35},
            )
        front = (report.front if split == "validation" else rows).sort_values("params")
        figure.add_scatter(
            x=front["params"],
            y=front[error],
            mode="lines+markers",
            line_shape="hv" if split == "validation" else "linear",
            name=f"{name}: Pareto front" + (" (validation) on test" if split == "test" else ""),
            hovertext=_hover(front, report, split),
            hoverinfo="text",
            marker={"color": color, "size": 8},
            line={"color": color},
        )
        unpruned = report.unpruned()
        if len(unpruned) and error in unpruned.columns and unpruned[error].notna().all():
            figure.add_scatter(
                x=unpruned["params"],
                y=unpruned[error],
                mode="markers",
                name=f"{name}: unpruned model",
                hoverinfo="text",
                hovertext=_hover(unpruned, report, split),
                marker={"color": color, "symbol": "diamond", "size": 13, "line": {"color": "black", "width": 1}},
            )
        picks = report.picks.drop_duplicates("trial_id") if len(report.picks) else report.picks
        pick_error = "validation_error" if split == "validation" else "test_error"
        picks = picks.dropna(subset=[pick_error, "layer_fraction"])
        if len(picks):
            names = [", ".join(report.picks.loc[report.picks["trial_id"] == t, "name"]) for t in picks["trial_id"]]
            figure.add_scatter(
                x=picks["layer_fraction"],
                y=picks[pick_error],
                mode="markers+text",
                text=names,
                textposition="top center",
                name=f"{name}: exported picks",
                marker={"color": color, "symbol": "star", "size": 16, "line": {"color": "black", "width": 1}},
            )
    return _axes(figure, f"Pareto front on the {split} split", PARAMS_LABEL, reports[0].error_label(split))


def hypervolume_figure(reports: list[RunReport]) -> go.Figure:
    figure = go.Figure()
    for index, report in enumerate(reports):
        seconds, trace = report.hypervolume_over_time()
        figure.add_scatter(
            x=seconds,
            y=trace,
            mode="lines+markers",
            line_shape="hv",
            name=report.label,
            marker={"color": _color(index)},
            line={"color": _color(index)},
        )
    return _axes(figure, "Hypervolume over time", "seconds since the first trial started", HYPERVOLUME_LABEL)


def cost_split(report: RunReport) -> dict[str, float]:
    """Seconds per stage, counted the same way for a pipeline, a search and a baseline run."""
    trials, costs = report.trials, {}
    if "finetune_seconds" in trials.columns:  # a baseline: every model is fine-tuned and pruned on its own
        costs["fine-tuning"] = float(trials["finetune_seconds"].sum())
        costs["pruning"] = float(trials.get("prune_seconds", pd.Series(dtype=float)).sum()) + float(
            report.metadata.get("prepare_seconds", 0.0)
        )
    else:
        supernet = Path(str(report.metadata.get("checkpoint", ""))) / SUPERNET_FILE
        if supernet.is_file() and "train_seconds" in (meta := read_json(supernet)):
            init_from = meta.get("options", {}).get("init_from")  # two-stage: the standard model it started from
            first_stage = Path(str(init_from)) / SUPERNET_FILE
            if init_from and first_stage.is_file() and "train_seconds" in (standard := read_json(first_stage)):
                costs["standard fine-tuning (first of two stages)"] = float(standard["train_seconds"])
            costs["super-network fine-tuning"] = float(meta["train_seconds"])
        costs["search (wall clock)"] = float(trials["end_time"].max() - trials["start_time"].min())
    seconds = (report.folder.summary or {}).get("seconds", {})
    if "test_and_export" in seconds:
        costs["test scoring and export of the picks"] = float(seconds["test_and_export"])
    costs["total"] = sum(costs.values())
    return costs


def _runs_table(reports: list[RunReport]) -> pd.DataFrame:
    rows = []
    for report in reports:
        unpruned = report.unpruned()
        test_column = f"test_{report.metric}"
        rows.append(
            {
                "run": report.label,
                "task": report.metadata.get("task"),
                "method": report.metadata.get("searcher"),
                "objectives": ", ".join(report.objectives),
                "trials": len(report.trials),
                "Pareto front": len(report.front),
                "hypervolume": report.hypervolume,
                "best validation error": report.trials["error"].min(),
                f"unpruned test {report.metric}": unpruned[test_column].iloc[0]
                if len(unpruned) and test_column in unpruned
                else None,
                **{f"{stage} (s)": value for stage, value in cost_split(report).items()},
                "folder": str(report.folder.root),
            }
        )
    return pd.DataFrame(rows)


def _picks_table(reports: list[RunReport]) -> str:
    shown = [(report, report.picks) for report in reports if len(report.picks)]
    if not shown:
        return "<p class='note'>No exported picks: a search or baseline run; export one with <code>nas-tune select RUN --max-params F --output DIR</code>.</p>"
    parts = []
    for report, picks in shown:
        parts.append(
            f"<h3>{html.escape(report.label)}</h3>" + picks_display(picks, report.metric).to_html(index=False, border=0)
        )
    return "".join(parts)


def _settings(report: RunReport) -> str:
    settings = {
        "search": report.metadata,
        **({"pipeline": report.folder.summary.get("config")} if report.folder.summary else {}),
    }
    return (
        f"<details><summary>{html.escape(report.label)}</summary><pre>"
        f"{html.escape(json.dumps(settings, indent=2, sort_keys=True, default=str))}</pre></details>"
    )


def check_comparable(reports: list[RunReport]) -> None:
    tasks = {str(report.metadata.get("task")) for report in reports}
    if len(tasks) > 1:
        raise UserError(f"the runs are on different tasks ({', '.join(sorted(tasks))}); overlay only runs of one task.")


def write_html_report(reports: list[RunReport], path: str | Path) -> Path:
    check_comparable(reports)
    path = Path(path)
    figures = [pareto_figure(reports, "validation")]
    if any("test_error" in report.front.columns for report in reports):
        figures.append(pareto_figure(reports, "test"))
    figures.append(hypervolume_figure(reports))
    plots = [figure.to_html(full_html=False, include_plotlyjs=index == 0) for index, figure in enumerate(figures)]
    title = "nas-tune report: " + ", ".join(report.label for report in reports)
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            "<html><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            "<p class='note'>Every objective is minimised. Error is 1 - the task metric on the validation split carved out of the "
            "training data (what the search optimised); the test split (GLUE dev) is used for reporting only.</p>",
            "<h2>Runs and cost split</h2>",
            _runs_table(reports).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep=""),
            *plots,
            "<h2>Exported picks</h2>",
            _picks_table(reports),
            "<h2>Settings</h2>",
            *(_settings(report) for report in reports),
            "</body></html>",
        ]
    )
    atomic_write_text(path, page)
    return path
