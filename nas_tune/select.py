"""Pick Pareto points under a budget ("give me a model of N parameters"), export and test them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from transformers import PreTrainedModel

from nas_tune.data import default_cache_dir, tokenize_split
from nas_tune.errors import UserError
from nas_tune.evaluate import EvaluationResult, Evaluator, LatencySettings
from nas_tune.evaluate.setup import EvaluationSetup
from nas_tune.export import ExportResult, export_subnetwork
from nas_tune.metrics.trivial import TrivialPredictor, trivial_predictor
from nas_tune.models import DEFAULT_MODEL, bundled_model_path

CONFIG_PREFIX = "config_"
BUNDLED_HUB_NAME = f"sentence-transformers/{DEFAULT_MODEL}"


def base_model_name(source: str) -> str:
    """How a model card names the pre-trained model: the bundled MiniLM's folder inside site-packages means
    nothing to a reader, its hub name does."""
    return BUNDLED_HUB_NAME if Path(source) == bundled_model_path() else source


def config_of(row: pd.Series) -> dict:
    return {
        k[len(CONFIG_PREFIX) :]: (int(v) if float(v).is_integer() else v)
        for k, v in row.items()
        if k.startswith(CONFIG_PREFIX) and pd.notna(v)
    }


def pick(trials: pd.DataFrame, *, max_params: float | None = None, max_error: float | None = None) -> pd.Series:
    """Lowest error within a size budget, or the smallest sub-network within an error budget."""
    if (max_params is None) == (max_error is None):
        raise UserError("give exactly one budget: --max-params (fraction of layer parameters) or --max-error.")
    if max_params is not None:
        fitting = trials[trials["params"] <= max_params]
        if fitting.empty:
            raise UserError(
                f"no evaluated sub-network has at most {max_params:.0%} of the layer parameters (smallest: {trials['params'].min():.1%})."
            )
        return fitting.sort_values(["error", "params"]).iloc[0]
    fitting = trials[trials["error"] <= max_error]
    if fitting.empty:
        raise UserError(
            f"no evaluated sub-network has an error of at most {max_error:.4f} (best: {trials['error'].min():.4f})."
        )
    return fitting.sort_values(["params", "error"]).iloc[0]


def test_evaluator(setup: EvaluationSetup, max_seq_length: int) -> Evaluator:
    """An evaluator on the test split sharing the already loaded super-network."""
    validation = setup.evaluator
    data = tokenize_split(
        setup.data.test, setup.loaded.tokenizer, setup.data.task, max_seq_length, cache_dir=default_cache_dir()
    )
    return Evaluator(
        validation.model,
        validation.adapter,
        validation.search_space,
        validation.task,
        data,
        batch_size=validation.batch_size,
        flops_seq_len=validation.flops_seq_len,
    )


@dataclass
class ExportedPick:
    name: str
    row: pd.Series
    export: ExportResult
    test: EvaluationResult  # on the test split, latency measured at batch 1
    trivial: TrivialPredictor  # the best constant prediction on the same test split
    same_as: str | None = None  # the pick whose folder this one shares (the same sub-network)

    @property
    def no_better_than(self) -> str | None:
        """The trivial predictor this pick fails to beat on the test split, in words; None when it beats it."""
        return self.trivial.not_beaten_by(self.test.metrics)


def latency_record(seconds: float, settings: LatencySettings, model: PreTrainedModel) -> dict:
    """Latency with the conditions it was measured under: a number without them cannot be compared."""
    return {
        "seconds": seconds,
        "batch_size": settings.batch_size,
        "seq_len": settings.seq_len,
        "threads": settings.threads,
        "device": next(model.parameters()).device.type,
    }


def export_pick(
    setup: EvaluationSetup,
    tester: Evaluator,
    row: pd.Series,
    output: str | Path,
    *,
    name: str,
    provenance: dict,
    overwrite: bool = False,
    model: PreTrainedModel | None = None,
) -> ExportedPick:
    """Test `row`'s sub-network (metrics, batch-1 latency, the trivial predictor to beat) and export it with its
    labels and model card.

    `model`: a corrected copy of the super-network (e.g. repaired) to test and export instead of it.
    """
    config = config_of(row)
    space = setup.evaluator.search_space
    task = setup.data.task
    if model is not None:
        tester = Evaluator(
            model,
            tester.adapter,
            space,
            tester.task,
            tester.data,
            batch_size=tester.batch_size,
            flops_seq_len=tester.flops_seq_len,
        )
    latency = tester.latency_settings(LatencySettings(batch_size=1))  # the run's --max-seq-length
    test = tester.evaluate(config, latency=latency)
    trivial = trivial_predictor(task, tester.data.labels.numpy())
    export = export_subnetwork(
        model if model is not None else setup.loaded.model,
        setup.loaded.tokenizer,
        setup.loaded.adapter,
        space.to_subnetwork(config),
        output,
        provenance={
            "task": task.name,
            "text_columns": list(task.text_columns),
            "search_space": space.name,
            "pick": name,
            **provenance,
            "config": config,
            "trial_id": int(row["trial_id"]),
            "data_source": setup.data.source,
            "validation_error": float(row["error"]),
            "validation_metrics": {key: float(row[key]) for key in test.metrics if key in row.index},
            "test_metrics": test.metrics,
            "latency": latency_record(test.latency_seconds, latency, tester.model),
            "no_better_than_trivial": trivial.not_beaten_by(test.metrics),
        },
        label_names=task.label_names,
        overwrite=overwrite,
    )
    return ExportedPick(name, row, export, test, trivial)
