"""Pick Pareto points under a budget ("give me a model of N parameters"), export and test them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from transformers import PreTrainedModel

from nas_tune.data import default_cache_dir, tokenize_split
from nas_tune.errors import UserError
from nas_tune.evaluate import EvaluationResult, Evaluator
from nas_tune.evaluate.setup import EvaluationSetup
from nas_tune.export import ExportResult, export_subnetwork

CONFIG_PREFIX = "config_"


def config_of(row: pd.Series) -> dict:
    return {k[len(CONFIG_PREFIX):]: (int(v) if float(v).is_integer() else v) for k, v in row.items() if k.startswith(CONFIG_PREFIX) and pd.notna(v)}


def pick(trials: pd.DataFrame, *, max_params: float | None = None, max_error: float | None = None) -> pd.Series:
    """Lowest error within a size budget, or the smallest sub-network within an error budget."""
    if (max_params is None) == (max_error is None):
        raise UserError("give exactly one budget: --max-params (fraction of layer parameters) or --max-error.")
    if max_params is not None:
        fitting = trials[trials["params"] <= max_params]
        if fitting.empty:
            raise UserError(f"no evaluated sub-network has at most {max_params:.0%} of the layer parameters (smallest: {trials['params'].min():.1%}).")
        return fitting.sort_values(["error", "params"]).iloc[0]
    fitting = trials[trials["error"] <= max_error]
    if fitting.empty:
        raise UserError(f"no evaluated sub-network has an error of at most {max_error:.4f} (best: {trials['error'].min():.4f}).")
    return fitting.sort_values(["params", "error"]).iloc[0]


def test_evaluator(setup: EvaluationSetup, max_seq_length: int) -> Evaluator:
    """An evaluator on the test split sharing the already loaded super-network."""
    validation = setup.evaluator
    data = tokenize_split(setup.data.test, setup.loaded.tokenizer, setup.data.task, max_seq_length, cache_dir=default_cache_dir())
    return Evaluator(validation.model, validation.adapter, validation.search_space, validation.task, data,
                     batch_size=validation.batch_size, flops_seq_len=validation.flops_seq_len)


@dataclass
class ExportedPick:
    name: str
    row: pd.Series
    export: ExportResult
    test: EvaluationResult


def export_pick(setup: EvaluationSetup, tester: Evaluator, row: pd.Series, output: str | Path, *, name: str,
                provenance: dict, overwrite: bool = False, model: PreTrainedModel | None = None) -> ExportedPick:
    """`model`: a corrected copy of the super-network (e.g. repaired) to test and export instead of it."""
    config = config_of(row)
    space = setup.evaluator.search_space
    if model is not None:
        tester = Evaluator(model, tester.adapter, space, tester.task, tester.data, batch_size=tester.batch_size, flops_seq_len=tester.flops_seq_len)
    test = tester.evaluate(config)
    export = export_subnetwork(
        model if model is not None else setup.loaded.model, setup.loaded.tokenizer, setup.loaded.adapter, space.to_subnetwork(config), output,
        provenance={**provenance, "config": config, "trial_id": int(row["trial_id"]), "validation_error": float(row["error"]),
                    "test_metrics": test.metrics, "pick": name},
        overwrite=overwrite,
    )
    return ExportedPick(name, row, export, test)
