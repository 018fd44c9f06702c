"""What every pruning baseline shares: its inputs and settings, and the loop that scores and stores its models.

A baseline writes the same results-store rows as a search (objectives "error" and "params" on the validation
split, sizes, FLOPs, latency), plus the test-split metrics and what the model cost to make, so `nas-tune report`,
the Pareto code and the benchmark treat every method alike. Rows are appended the moment a model is scored,
so `--resume` redoes only the budgets that are missing.
"""

from __future__ import annotations

import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm
from transformers import PreTrainedModel

from nas_tune.data import DataConfig, TaskSpec, TokenizedSplit, default_cache_dir, load_task_data, tokenize_split
from nas_tune.errors import UserError
from nas_tune.evaluate import Evaluator
from nas_tune.export import export_subnetwork
from nas_tune.models import LoadedModel, ModelAdapter, SubNetwork, load_model
from nas_tune.models.bert import BertFamilyAdapter
from nas_tune.models.loading import supported_model_types
from nas_tune.search.driver import check_resumable
from nas_tune.search.objectives import objective_metrics, time_reference
from nas_tune.search.store import ResultsStore, TrialRecord
from nas_tune.search_space import Config, config_key
from nas_tune.settings import DEFAULT_BUDGETS, BaselineSettings, FinetuneConfig, check_budgets  # noqa: F401  (re-exported)
from nas_tune.supernet import finetune

OBJECTIVES = ["error", "params"]


@dataclass
class BaselineInputs:
    """A loaded model and the task splits: the same seeded validation split a search optimises."""

    loaded: LoadedModel
    task: TaskSpec
    train: TokenizedSplit
    validation: TokenizedSplit
    test: TokenizedSplit
    max_seq_length: int = 128


def load_inputs(
    model: str | None,
    data_config: DataConfig,
    *,
    max_seq_length: int = 128,
    seed: int = 0,
    trust_remote_code: bool = False,
    pooling: str = "auto",
) -> BaselineInputs:
    data = load_task_data(data_config)
    loaded = load_model(
        model,
        data.task.num_labels,
        seed=seed,
        trust_remote_code=trust_remote_code,
        causal_lm=data.task.causal_lm,
        pooling=pooling,
    )
    splits = [
        tokenize_split(frame, loaded.tokenizer, data.task, max_seq_length, cache_dir=default_cache_dir())
        for frame in (data.train, data.validation, data.test)
    ]
    return BaselineInputs(loaded, data.task, *splits, max_seq_length=max_seq_length)


@dataclass
class Candidate:
    """One pruned model: `adapter.extract(model, subnet)` is what gets scored and exported."""

    config: Config  # the baseline's own setting (e.g. {"budget": 0.5}): the trial's config in the store
    subnet: SubNetwork  # what is kept of the original model: its size
    model: PreTrainedModel  # full-size weights it is cut from: the original, or a tuned / retrained copy
    metrics: dict[str, float] = field(default_factory=dict)  # baseline-specific extras, e.g. finetune_seconds


class Scorer:
    """Scores a pruned model as a search trial is scored (`objective_metrics` on the validation split, sizes of
    the original, latency as a fraction of the unpruned model's timed alike), plus the test-split metrics as `test_*`."""

    def __init__(self, inputs: BaselineInputs):
        model, adapter = inputs.loaded.model, inputs.loaded.adapter
        self.validation, self.test = (
            Evaluator(model, adapter, None, inputs.task, split, flops_seq_len=inputs.max_seq_length)
            for split in (inputs.validation, inputs.test)
        )
        self.reference = time_reference(self.validation)

    def measure(self, pruned: PreTrainedModel, subnet: SubNetwork) -> dict[str, float]:
        result = self.validation.evaluate_subnetwork(subnet, extracted=pruned, latency=self.reference.settings)
        values = objective_metrics(result, self.reference)
        tested = self.test.evaluate_subnetwork(subnet, extracted=pruned)
        values.update({f"test_{name}": value for name, value in tested.metrics.items()})
        return values


class Baseline(ABC):
    """A pruning method that fills a results store with scored sub-networks of one model."""

    name: ClassVar[str]
    prunes_finetuned: ClassVar[
        bool
    ]  # True: prunes a fine-tuned classifier (or a causal LM); False: fine-tunes what it keeps
    adapters: ClassVar[tuple[type[ModelAdapter], ...]] = (BertFamilyAdapter,)  # model families it supports
    default_epochs: ClassVar[int] = 3

    def __init_subclass__(cls, **kwargs):
        """Families are not inherited: a subclass adds steps (rfp's mask tuning on importance's scores) that may need
        more of a family than its parent's do, so a baseline that names none supports the default (BERT) only."""
        super().__init_subclass__(**kwargs)
        if "adapters" not in vars(cls):
            cls.adapters = Baseline.adapters

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        self.inputs, self.settings = inputs, settings
        self.model, self.adapter = inputs.loaded.model, inputs.loaded.adapter
        config = self.model.config
        if not isinstance(self.adapter, self.adapters):
            supported = supported_model_types(self.adapters)
            raise UserError(
                f"{self.name} supports {', '.join(supported)} models, not '{config.model_type}'; "
                f"use layer_drop or a model of a supported family."
            )
        architectures = config.architectures or []
        if (
            self.prunes_finetuned
            and not inputs.task.causal_lm
            and architectures
            and not any(a.endswith("ForSequenceClassification") for a in architectures)
        ):
            raise UserError(
                f"{self.name} prunes a model fine-tuned on the task, but '{inputs.loaded.source}' is a pre-trained "
                f"{architectures[0]}; fine-tune it first (nas-tune finetune --strategy standard --output CKPT) and pass --model CKPT."
            )
        self.shape = self.adapter.shape(self.model)

    @property
    @abstractmethod
    def search_space(self) -> str:
        """The search space its sub-networks belong to (run metadata)."""

    @abstractmethod
    def run(self, store: ResultsStore, *, show_progress: bool = True) -> None:
        """Append one scored row per sub-network to `store`, skipping what it already holds (resume)."""

    def finetune_config(self) -> FinetuneConfig:
        """Plain fine-tuning of a pruned model (layer_drop, standard_nas trials)."""
        s = self.settings
        return FinetuneConfig(
            strategy="standard",
            search_space="small",
            epochs=s.epochs or self.default_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=s.seed,
        )

    def finetune_extracted(self, subnet: SubNetwork) -> tuple[PreTrainedModel, float]:
        """`subnet` cut out of the pre-trained model and fine-tuned plainly (its checkpoint is not kept); the seconds it took."""
        loaded = self.inputs.loaded
        small = self.adapter.extract(self.model, subnet)
        with tempfile.TemporaryDirectory(prefix=f"nas-tune-{self.name}-") as output:
            result = finetune(
                LoadedModel(small, loaded.tokenizer, self.adapter, loaded.source, loaded.head_is_new),
                self.inputs.task,
                self.inputs.train,
                self.inputs.validation,
                self.finetune_config(),
                output,
                show_progress=False,
            )
        return small, result.seconds

    def metadata(self) -> dict[str, Any]:
        """What identifies the run (compared on --resume) and what `nas-tune report` reads."""
        return {
            "checkpoint": self.inputs.loaded.source,
            "task": self.inputs.task.name,
            "search_space": self.search_space,
            "searcher": self.name,
            "objectives": OBJECTIVES,
            "seed": self.settings.seed,
            "max_params": None,
            "settings": asdict(self.settings),
        }


class GridBaseline(Baseline):
    """A method run once per setting: `configs()` lists them (one per budget), `prune(config)` makes one model.

    `prepare()` holds work shared by all configs (e.g. importance scores) and is timed on its own, so the
    cost of one more budget is visible.
    """

    space: ClassVar[str]

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        self.configs()  # reject budgets this method cannot meet before any work

    @property
    def search_space(self) -> str:
        return self.space

    def configs(self) -> list[Config]:
        return [{"budget": budget} for budget in self.settings.budgets]

    def prepare(self) -> None:
        """Work shared by every config; nothing by default."""

    @abstractmethod
    def prune(self, config: Config) -> Candidate: ...

    def run(self, store: ResultsStore, *, show_progress: bool = True) -> None:
        done = {config_key(r.config) for r in store.records() if r.status == "completed"}
        todo = [config for config in self.configs() if config_key(config) not in done]
        if not todo:
            return
        start = time.perf_counter()
        self.prepare()
        store.write_metadata({**store.read_metadata(), "prepare_seconds": time.perf_counter() - start})
        scorer = Scorer(self.inputs)
        first_id = max((r.trial_id for r in store.records()), default=-1) + 1
        for trial_id, config in enumerate(
            tqdm(todo, desc=self.name, unit="model", disable=not show_progress), start=first_id
        ):
            started = time.time()
            candidate = self.prune(config)
            build_seconds = time.time() - started
            pruned = self.adapter.extract(candidate.model, candidate.subnet).eval()
            metrics = {**scorer.measure(pruned, candidate.subnet), **candidate.metrics}
            metrics["prune_seconds"] = build_seconds - metrics.get("finetune_seconds", 0.0)
            if "budget" in config and metrics["params"] > config["budget"] + 1e-12:
                raise RuntimeError(
                    f"{self.name} kept {metrics['params']:.4f} of the layer parameters, over its budget {config['budget']}"
                )
            if self.settings.export:
                self.export(candidate, store.run_dir / "models" / "_".join(f"{k}-{v}" for k, v in config.items()))
            store.append(
                TrialRecord(trial_id, config, metrics, worker=self.name, start_time=started, end_time=time.time())
            )

    def export(self, candidate: Candidate, path: Path) -> None:
        loaded = self.inputs.loaded
        export_subnetwork(
            candidate.model,
            loaded.tokenizer,
            self.adapter,
            candidate.subnet,
            path,
            overwrite=True,
            label_names=self.inputs.task.label_names,
            provenance={"baseline": self.name, "config": candidate.config, "source_model": loaded.source},
        )


def run_baseline(
    baseline: Baseline, output: str | Path, *, resume: bool = False, overwrite: bool = False, show_progress: bool = True
) -> ResultsStore:
    """Run `baseline` into the run folder `output` (metadata.json, trials.jsonl, trials.csv)."""
    store = ResultsStore(output)
    metadata = baseline.metadata()
    check_resumable(store, metadata, resume=resume, overwrite=overwrite)
    store.run_dir.mkdir(parents=True, exist_ok=True)
    store.write_metadata(metadata)
    baseline.run(store, show_progress=show_progress)
    store.write_csv()
    return store
