"""Find a run's parts from the folder a user names: a pipeline run (summary.json, search/) or a search run.

Every command that reads a search run goes through `resolve_run_folder`, so the folder the launcher prints
(`runs/rte-quick`) works as well as its `search/` folder, and anything else is refused in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_json, read_json

SUMMARY_FILE = "summary.json"
SEARCH_DIR = "search"
METADATA_FILE = "metadata.json"
TEST_METRICS_FILE = (
    "test_metrics.json"  # in the search folder: test-split metrics per trial id, written by the pipeline
)
EXPECTED = (
    f"a pipeline run folder ({SUMMARY_FILE} and {SEARCH_DIR}/{METADATA_FILE}, as launchers/local.py writes) "
    f"or a search run folder ({METADATA_FILE} and trials.jsonl, as `nas-tune search` and `nas-tune baseline` write)"
)


@dataclass(frozen=True)
class RunFolder:
    root: Path  # the pipeline's top-level folder, or the search folder itself when there is no pipeline around it
    search: Path  # the folder holding metadata.json and trials.jsonl
    summary: dict[str, Any] | None  # the pipeline's summary.json (picks, cost), None for a plain search run

    @property
    def name(self) -> str:
        return self.root.name


def resolve_run_folder(path: str | Path) -> RunFolder:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; pass {EXPECTED}.")
    if (path / METADATA_FILE).is_file():
        parent = path.parent
        if path.name == SEARCH_DIR and (parent / SUMMARY_FILE).is_file():
            return RunFolder(parent, path, _read_summary(parent))
        return RunFolder(path, path, None)
    if (path / SEARCH_DIR / METADATA_FILE).is_file():
        summary = _read_summary(path) if (path / SUMMARY_FILE).is_file() else None
        return RunFolder(path, path / SEARCH_DIR, summary)
    if (path / "supernet").is_dir():
        raise UserError(
            f"{path} holds a super-network but no search yet; continue the pipeline with --resume, "
            f"or search it with `nas-tune search --checkpoint {path / 'supernet'}`."
        )
    raise UserError(f"{path} is not a run folder: expected {EXPECTED}.")


def _read_summary(root: Path) -> dict[str, Any]:
    try:
        summary = read_json(root / SUMMARY_FILE)
    except ValueError as exc:
        raise UserError(
            f"{root / SUMMARY_FILE} is not valid JSON ({exc}); rerun the pipeline with --resume to rewrite it."
        ) from exc
    if not isinstance(summary, dict):
        raise UserError(
            f"{root / SUMMARY_FILE} must hold a JSON object; rerun the pipeline with --resume to rewrite it."
        )
    return summary


def read_test_metrics(search_dir: Path) -> dict[int, dict[str, float]]:
    """Test-split metrics by trial id; empty when the run has none (a plain search).

    Runs of nas-tune 0.1.0 kept them only in pareto.csv's test_* columns: those are read then, so a report
    regenerated from such a run keeps them too.
    """
    path = search_dir / TEST_METRICS_FILE
    if not path.is_file():
        return _test_columns_of_pareto_csv(search_dir / "pareto.csv")
    try:
        return {int(trial_id): metrics for trial_id, metrics in read_json(path).items()}
    except (ValueError, AttributeError) as exc:
        raise UserError(
            f"{path} is not a JSON object of test metrics per trial ({exc}); delete it and rerun the pipeline with --resume."
        ) from exc


def _test_columns_of_pareto_csv(path: Path) -> dict[int, dict[str, float]]:
    if not path.is_file():
        return {}
    front = pd.read_csv(path)
    tests = [column for column in front.columns if column.startswith("test_")]
    if not tests or "trial_id" not in front.columns:
        return {}
    renamed = front.set_index(front["trial_id"].astype(int))[tests].rename(
        columns=lambda column: column[len("test_") :]
    )
    return {trial_id: values.dropna().to_dict() for trial_id, values in renamed.iterrows()}


def write_test_metrics(search_dir: Path, metrics: dict[int, dict[str, float]]) -> None:
    atomic_write_json(
        search_dir / TEST_METRICS_FILE, {str(trial_id): values for trial_id, values in sorted(metrics.items())}
    )
