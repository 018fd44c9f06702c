"""Super-network fine-tuning: sampling strategies and the one training loop."""

from nas_tune.supernet.strategies import (
    ALIASES,
    STRATEGIES,
    Strategy,
    StrategyOptions,
    canonical_strategy,
    make_strategy,
)
from nas_tune.supernet.train import SUPERNET_FILE, FinetuneConfig, FinetuneResult, finetune, read_supernet_meta

__all__ = [
    "ALIASES",
    "STRATEGIES",
    "SUPERNET_FILE",
    "FinetuneConfig",
    "FinetuneResult",
    "Strategy",
    "StrategyOptions",
    "canonical_strategy",
    "finetune",
    "make_strategy",
    "read_supernet_meta",
]
