"""The whole method in one call: fine-tune the super-network, search it, report, export picked models."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from nas_tune.baselines.importance import MIN_SAMPLES
from nas_tune.baselines.repair import repair_subnetwork, repair_training_split
from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.evaluate import LatencySettings
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.report.plots import plot_pareto
from nas_tune.report.summary import format_table, report_run
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import ExecutorFactory, local_executor, search_checkpoint
from nas_tune.select import ExportedPick, config_of, export_pick, pick, test_evaluator
from nas_tune.supernet import SUPERNET_FILE, FinetuneConfig, FinetuneResult, read_supernet_meta
from nas_tune.supernet.run import finetune_supernet


@dataclass
class PipelineConfig:
    model: str | None
    data: DataConfig
    finetune: FinetuneConfig
    search: SearchSettings
    max_seq_length: int = 128
    eval_batch_size: int = 64
    reorder: str = "none"  # "importance": heads/neurons sorted best-first before super-network training
    repair: bool = False  # least-squares output reconstruction of each picked sub-network before it is tested and exported
    picks: dict[str, str] = field(default_factory=lambda: {
        "within_1pct": "smallest sub-network within 1 % of the full model's validation metric",
        "within_5pct": "smallest sub-network within 5 % of the full model's validation metric",
        "half_size": "best sub-network with at most 50 % of the layer parameters",
    })


@dataclass
class PipelineResult:
    output: Path
    front: pd.DataFrame
    exported: list[ExportedPick]
    table: str


def _picks(trials: pd.DataFrame, full_error: float) -> dict[str, pd.Series]:
    """Smallest within 1 % / 5 % (relative) of the full model's metric, and the best at <= 50 % size."""
    full_metric = 1.0 - full_error
    chosen = {}
    for name, tolerance in (("within_1pct", 0.01), ("within_5pct", 0.05)):
        chosen[name] = pick(trials, max_error=1.0 - (1.0 - tolerance) * full_metric)
    if (trials["params"] <= 0.5).any():
        chosen["half_size"] = pick(trials, max_params=0.5)
    return chosen


def run_pipeline(config: PipelineConfig, output: str | Path, *, resume: bool = False, overwrite: bool = False, show_progress: bool = True,
                 finetune: Callable[..., FinetuneResult] = finetune_supernet, executor_factory: ExecutorFactory = local_executor) -> PipelineResult:
    """`finetune` (called like `finetune_supernet`) and `executor_factory` decide where stages 1 and 2 run."""
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not (resume or overwrite):
        raise UserError(f"{output} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --output.")
    if config.repair and (config.data.max_train_samples or MIN_SAMPLES) < MIN_SAMPLES:  # fail before hours of work, not after
        raise UserError(f"--repair needs at least {MIN_SAMPLES} training examples but --max-train-samples is {config.data.max_train_samples}; "
                        "raise it or drop --repair.")
    supernet_dir, search_dir, models_dir = output / "supernet", output / "search", output / "models"
    finished = (supernet_dir / SUPERNET_FILE).is_file() and read_supernet_meta(supernet_dir).get("status") == "completed"
    if not (resume and finished):
        print(f"[1/3] fine-tuning the super-network -> {supernet_dir}")
        finetune(config.model, config.data, config.finetune, supernet_dir, max_seq_length=config.max_seq_length,
                          resume=resume and supernet_dir.exists(), overwrite=overwrite, show_progress=show_progress,
                          reorder=config.reorder)
    print(f"[2/3] searching sub-networks ({config.search.searcher}, {config.search.num_trials} trials) -> {search_dir}")
    latency = LatencySettings() if "latency" in config.search.objectives else None
    store, setup = search_checkpoint(supernet_dir, search_dir, config.search, data_dir=config.data.data_dir, batch_size=config.eval_batch_size,
                                     latency=latency, resume=resume and (search_dir / "metadata.json").exists(), overwrite=overwrite,
                                     show_progress=show_progress, executor_factory=executor_factory)
    report = report_run(search_dir)
    task = setup.data.task
    tester = test_evaluator(setup, config.max_seq_length)
    front = report.front.copy()
    test_results = [tester.evaluate(config_of(row)) for _, row in front.iterrows()]
    front[f"test_{task.metric}"] = [r.metrics[task.metric] for r in test_results]
    front["test_error"] = [r.metrics["error"] for r in test_results]
    atomic_write_text(search_dir / "pareto.csv", front.to_csv(index=False))

    print(f"[3/3] exporting picked sub-networks -> {models_dir}")
    full_error = float(report.trials.loc[report.trials["params"].idxmax(), "error"])
    train = repair_training_split(setup, config.max_seq_length) if config.repair else None
    exported, repairs = [], {}
    for name, row in _picks(report.trials, full_error).items():
        provenance = {"checkpoint": str(supernet_dir.resolve()), "description": config.picks[name]}
        repaired = None if train is None else repair_subnetwork(setup.loaded, setup.evaluator.search_space.to_subnetwork(config_of(row)), train)
        if repaired is not None:
            provenance["repair"] = repairs[name] = repaired.summary()
        exported.append(export_pick(setup, tester, row, models_dir / name, name=name, overwrite=True, provenance=provenance,
                                    model=repaired.model if repaired else None))
    names_by_trial: dict[int, list[str]] = {}
    for item in exported:  # picks that coincide share one label
        names_by_trial.setdefault(int(item.row["trial_id"]), []).append(item.name)
    highlight = pd.DataFrame([report.trials.set_index("trial_id").loc[t] for t in names_by_trial],
                             index=[", ".join(n) for n in names_by_trial.values()])
    plot_pareto(report.trials, "params", "error", search_dir / "pareto.png", highlight=highlight,
                title=f"{task.name}: validation error vs. layer parameters")
    table = format_table(front, task.metric)
    summary = {
        "task": task.name, "hypervolume": report.hypervolume, "trials": len(report.trials), "pareto_size": len(front),
        "full_model_validation_error": full_error, "config": json.loads(json.dumps(asdict(config), default=str)),
        "exported": [{"name": e.name, "path": str(e.export.path), "layer_fraction": e.export.layer_fraction,
                      "total_params": e.export.total_params, "validation_error": float(e.row["error"]),
                      f"test_{task.metric}": e.test.metrics[task.metric], "needs_trust_remote_code": e.export.needs_remote_code,
                      "repair": repairs.get(e.name)}
                     for e in exported],
    }
    atomic_write_json(output / "summary.json", summary)
    return PipelineResult(output, front, exported, table)
