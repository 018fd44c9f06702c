"""The picks of a pipeline run (summary.json's "exported" list) as a table, for `show`, plots and report.html."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

PICK_COLUMNS = [
    "name",
    "same_as",
    "trial_id",
    "layer_fraction",
    "total_params",
    "validation_error",
    "test_error",
    "latency_ms",
    "warning",
    "config",
    "path",
]


def picks_frame(summary: dict | None, metric: str) -> pd.DataFrame:
    """One row per pick name; aliases (same sub-network as another pick) name it in `same_as`."""
    entries = (summary or {}).get("exported") or []
    frame = pd.DataFrame(entries).reindex(
        columns=list(
            dict.fromkeys(
                [
                    *PICK_COLUMNS,
                    f"validation_{metric}",
                    f"test_{metric}",
                    "latency_seconds",
                    "no_better_than_trivial",
                    "description",
                ]
            )
        )
    )
    frame["latency_ms"] = frame["latency_seconds"] * 1000.0
    frame["warning"] = frame["no_better_than_trivial"].map(
        lambda text: f"no better than {text}" if isinstance(text, str) else ""
    )
    frame["config"] = frame["config"].map(lambda config: json.dumps(config) if isinstance(config, dict) else "")
    frame["same_as"] = frame["same_as"].fillna("")
    return frame


def pick_highlights(picks: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The picked trials' rows, indexed by the names of the picks that chose them ("within_1pct, within_5pct")."""
    known = picks.dropna(subset=["trial_id"])
    by_trial = trials.set_index(trials["trial_id"].astype(int))
    names: dict[int, list[str]] = {}
    for name, trial_id in zip(known["name"], known["trial_id"].astype(int)):
        if trial_id in by_trial.index:
            names.setdefault(trial_id, []).append(name)
    return pd.DataFrame([by_trial.loc[t] for t in names], index=[", ".join(n) for n in names.values()])


def picks_display(picks: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The picks as text cells: sizes, metrics, latency, warnings, configs and paths (`show`, report.html)."""
    columns = [
        "name",
        "trial_id",
        "layer_fraction",
        "total_params",
        f"validation_{metric}",
        f"test_{metric}",
        "latency_ms",
        "warning",
        "config",
        "path",
    ]
    shown = picks[columns].copy()
    shown["path"] = [
        f"{path} (same sub-network as {alias})" if alias else path
        for path, alias in zip(picks["path"], picks["same_as"])
    ]
    for column in columns:
        if column in ("trial_id", "total_params"):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
        elif column == "layer_fraction":
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        elif shown[column].dtype.kind == "f":
            digits = 1 if column == "latency_ms" else 4
            shown[column] = shown[column].map(lambda v, digits=digits: "" if np.isnan(v) else f"{v:.{digits}f}")
    return shown
