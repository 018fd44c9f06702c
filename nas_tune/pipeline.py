"""The whole method in one call: fine-tune the super-network, search it, report, export picked models."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.evaluate import Evaluator
from nas_tune.evaluate.setup import EvaluationSetup
from nas_tune.io import atomic_write_json
from nas_tune.output_folder import check_output_folder, is_empty
from nas_tune.pareto import hypervolume, normalise_objectives, pareto_front
from nas_tune.pruning.repair import check_repair_samples, repair_subnetwork, repair_training_split
from nas_tune.report.run_folder import write_test_metrics
from nas_tune.report.summary import format_table, load_run, report_run
from nas_tune.search.run import ExecutorFactory, local_executor, search_checkpoint
from nas_tune.select import ExportedPick, base_model_name, config_of, export_pick, pick, test_evaluator
from nas_tune.settings import RECIPES, PipelineConfig, is_text_dataset  # PipelineConfig re-exported
from nas_tune.supernet import SUPERNET_FILE, FinetuneConfig, FinetuneResult, read_supernet_meta
from nas_tune.supernet.run import finetune_supernet
from nas_tune.supernet.strategies import require_distillation


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


def distinct_picks(chosen: dict[str, pd.Series]) -> list[tuple[list[str], pd.Series]]:
    """Picks grouped by sub-network: budgets that chose the same trial share one export (first name, aliases)."""
    groups: dict[int, tuple[list[str], pd.Series]] = {}
    for name, row in chosen.items():
        groups.setdefault(int(row["trial_id"]), ([], row))[0].append(name)
    return list(groups.values())


def _pick_record(item: ExportedPick, metric: str, data_source: str, description: str, repair: dict | None) -> dict:
    """One summary.json entry: what the pick is, where it came from, how good, big and fast it is, and where it lies."""
    row, export, test = item.row, item.export, item.test
    return {
        "name": item.name,
        "description": description,
        "same_as": item.same_as,
        "path": str(export.path),
        "trial_id": int(row["trial_id"]),
        "config": config_of(row),
        "data_source": data_source,
        "layer_fraction": export.layer_fraction,
        "layer_params": export.layer_params,
        "total_params": export.total_params,
        "total_fraction": float(row["total_fraction"]),
        "validation_error": float(row["error"]),
        f"validation_{metric}": float(row[metric]),
        "test_error": test.metrics["error"],
        f"test_{metric}": test.metrics[metric],
        "latency_seconds": test.latency_seconds,
        "needs_trust_remote_code": export.needs_remote_code,
        "repair": repair,
        "no_better_than_trivial": item.no_better_than,
    }


def describe_data_budget(data: DataConfig) -> str:
    """What the run will train and evaluate on, said before it starts: the evaluation cost follows these caps."""

    def at_most(cap: int | None, what: str) -> str:
        return f"all {what}" if cap is None else f"at most {cap} {what}"

    unit = "paragraphs" if is_text_dataset(data.dataset) else "examples"  # text is cut into blocks after the caps
    return (
        f"data: {data.dataset}, training on {at_most(data.max_train_samples, f'training {unit}')}, every trial scored on "
        f"{at_most(data.max_validation_samples, f'validation {unit}')}, picks tested on {at_most(data.max_test_samples, f'test {unit}')}"
    )


def _check_before_start(config: PipelineConfig, output: Path, *, resume: bool, overwrite: bool) -> None:
    """Everything that can be refused before hours of work: the run folder, the data budget, the recipe."""
    check_output_folder(
        output, holds_run=not is_empty(output), what="a run", resume=resume, overwrite=overwrite, resume_may_start=True
    )  # --resume also starts a run folder that holds nothing yet
    if config.repair:
        check_repair_samples(config.data.max_train_samples)
    if config.recipe not in RECIPES:
        raise UserError(f"unknown recipe '{config.recipe}'; choose one of: {', '.join(RECIPES)}.")
    if config.recipe == "two_stage":
        require_distillation(config.finetune.strategy)  # before the first stage, not after it


def _finetune_stages(
    config: PipelineConfig,
    output: Path,
    finetune: Callable[..., FinetuneResult],
    *,
    resume: bool,
    overwrite: bool,
    show_progress: bool,
) -> None:
    """Stage 1 of the pipeline: the super-network in output/supernet (two_stage: from output/standard).

    A stage whose folder holds a completed checkpoint is skipped on --resume, so no step is trained twice.
    """
    common = {
        "max_seq_length": config.max_seq_length,
        "overwrite": overwrite,
        "show_progress": show_progress,
        "trust_remote_code": config.trust_remote_code,
        "pooling": config.pooling,
    }

    def run(label: str, folder: Path, finetune_config: FinetuneConfig, **extra) -> None:
        if resume and (folder / SUPERNET_FILE).is_file() and read_supernet_meta(folder).get("status") == "completed":
            return
        print(f"[1/3] {label} -> {folder}")
        finetune(
            config.model, config.data, finetune_config, folder, resume=resume and folder.exists(), **common, **extra
        )

    if config.recipe == "one_stage":
        run("fine-tuning the super-network", output / "supernet", config.finetune, reorder=config.reorder)
        return
    standard_dir = output / "standard"
    run("two-stage recipe: standard fine-tuning", standard_dir, replace(config.finetune, strategy="standard"))
    second = replace(config.finetune, epochs=1, max_steps=config.second_stage_steps)
    run(
        f"two-stage recipe: super-network from it, distilled from it ({second.strategy})",
        output / "supernet",
        second,
        reorder=config.reorder,
        init_from=str(standard_dir),
        teacher=str(standard_dir),
    )


def _search_stage(
    config: PipelineConfig,
    output: Path,
    executor_factory: ExecutorFactory,
    *,
    resume: bool,
    overwrite: bool,
    show_progress: bool,
) -> EvaluationSetup:
    """Stage 2: the search of output/supernet into output/search."""
    search_dir = output / "search"
    print(f"[2/3] searching sub-networks ({config.search.searcher}, {config.search.num_trials} trials) -> {search_dir}")
    _, setup = search_checkpoint(
        output / "supernet",
        search_dir,
        config.search,
        data_dir=config.data.data_dir,
        batch_size=config.eval_batch_size,
        latency=config.latency,
        resume=resume and (search_dir / "metadata.json").exists(),
        overwrite=overwrite,
        show_progress=show_progress,
        executor_factory=executor_factory,
    )
    return setup


def _test_front(
    config: PipelineConfig, search_dir: Path, tester: Evaluator
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Score the Pareto front and the unpruned model (the reference for every pick) on the test split, into the search's
    trials; return the trials, the front and the unpruned model's validation error."""
    _, _, trials = load_run(search_dir)
    full = trials.loc[[trials["params"].idxmax()]]
    front = pareto_front(trials, config.search.objectives)
    scored = pd.concat([front, full]).drop_duplicates("trial_id")
    write_test_metrics(
        search_dir, {int(row["trial_id"]): tester.evaluate(config_of(row)).metrics for _, row in scored.iterrows()}
    )
    return trials, front, float(full["error"].iloc[0])


def _export_picks(
    config: PipelineConfig,
    output: Path,
    setup: EvaluationSetup,
    tester: Evaluator,
    trials: pd.DataFrame,
    full_error: float,
) -> tuple[list[ExportedPick], dict[str, dict | None]]:
    """Stage 3: each distinct pick repaired (with --repair), tested and exported once to output/models/<first name>;
    returns the picks in `config.picks` order (aliases included) and each one's repair summary."""
    supernet_dir, models_dir = output / "supernet", output / "models"
    print(f"[3/3] exporting picked sub-networks -> {models_dir}")
    train = repair_training_split(setup, config.max_seq_length) if config.repair else None
    base_model = base_model_name(read_supernet_meta(supernet_dir)["base_model"])
    exported: list[ExportedPick] = []
    repairs: dict[str, dict | None] = {}
    for names, row in distinct_picks(_picks(trials, full_error)):
        first = names[0]
        provenance = {
            "checkpoint": str(supernet_dir.resolve()),
            "base_model": base_model,
            "description": config.picks[first],
            "picks": {name: config.picks[name] for name in names},
        }
        repaired = (
            None
            if train is None
            else repair_subnetwork(setup.loaded, setup.evaluator.search_space.to_subnetwork(config_of(row)), train)
        )
        if repaired is not None:
            provenance["repair"] = repairs[first] = repaired.summary()
        item = export_pick(
            setup,
            tester,
            row,
            models_dir / first,
            name=first,
            overwrite=True,
            provenance=provenance,
            model=repaired.model if repaired else None,
        )
        exported.append(item)
        for alias in names[1:]:
            print(
                f"{alias} is the same sub-network as {first} (trial {int(row['trial_id'])}): saved once, in {item.export.path}"
            )
            shutil.rmtree(
                models_dir / alias, ignore_errors=True
            )  # a folder an earlier run of this pipeline wrote for it
            exported.append(replace(item, name=alias, same_as=first))
            repairs[alias] = repairs.get(first)
    exported.sort(key=lambda item: list(config.picks).index(item.name))
    return exported, repairs


def _warn_unlearnt(exported: list[ExportedPick], metric: str) -> None:
    for item in exported:
        if item.same_as is None and item.no_better_than:
            print(
                f"warning: {item.name} scores test {metric} {item.test.metrics[metric]:.4f}, no better than "
                f"{item.no_better_than}: it has not learnt the task",
                file=sys.stderr,
            )


def run_pipeline(
    config: PipelineConfig,
    output: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    finetune: Callable[..., FinetuneResult] = finetune_supernet,
    executor_factory: ExecutorFactory = local_executor,
) -> PipelineResult:
    """`finetune` (called like `finetune_supernet`) and `executor_factory` decide where stages 1 and 2 run."""
    output = Path(output)
    _check_before_start(config, output, resume=resume, overwrite=overwrite)
    print(describe_data_budget(config.data))
    _finetune_stages(config, output, finetune, resume=resume, overwrite=overwrite, show_progress=show_progress)
    setup = _search_stage(
        config, output, executor_factory, resume=resume, overwrite=overwrite, show_progress=show_progress
    )
    started = time.perf_counter()
    task = setup.data.task
    tester = test_evaluator(setup, config.max_seq_length)
    trials, front, full_error = _test_front(config, output / "search", tester)
    exported, repairs = _export_picks(config, output, setup, tester, trials, full_error)
    _warn_unlearnt(exported, task.metric)
    trivial = exported[0].trivial
    summary = {
        "task": task.name,
        "trials": len(trials),
        "pareto_size": len(front),
        "data_source": setup.data.source,
        "hypervolume": hypervolume(normalise_objectives(trials, config.search.objectives)),
        "full_model_validation_error": full_error,
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "trivial_predictor": {
            "description": trivial.description,
            **{f"test_{k}": v for k, v in trivial.metrics.items()},
        },
        "seconds": {"test_and_export": time.perf_counter() - started},
        "exported": [
            _pick_record(item, task.metric, setup.data.source, config.picks[item.name], repairs.get(item.name))
            for item in exported
        ],
    }
    atomic_write_json(output / "summary.json", summary)
    report = report_run(output)  # pareto.csv with test metrics, plots with the picks, report.html
    return PipelineResult(output, report.front, exported, format_table(report.front, task.metric))
