"""Build an Evaluator from user-level options (model, data, space), or from a super-network checkpoint.

`checkpoint_evaluator` is how every consumer of a checkpoint (search, select, repair, the benchmarks)
reads one: the data it was trained with (so the same seeded validation split is scored) and its
sequence length. The baselines' `load_inputs` loads the same pieces plus the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_tune.data import DataConfig, TaskData, default_cache_dir, load_task_data, tokenize_split
from nas_tune.evaluate.evaluator import Evaluator
from nas_tune.models import LoadedModel, load_model
from nas_tune.search_space import make_search_space
from nas_tune.settings import SPLITS
from nas_tune.supernet import read_supernet_meta


@dataclass
class EvaluationSetup:
    evaluator: Evaluator
    loaded: LoadedModel
    data: TaskData


def build_evaluator(
    model: str | None,
    data_config: DataConfig,
    search_space: str,
    *,
    split: str = "validation",
    max_seq_length: int = 128,
    batch_size: int = 64,
    seed: int = 0,
    trust_remote_code: bool = False,
    pooling: str = "auto",
) -> EvaluationSetup:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    data = load_task_data(data_config)
    loaded = load_model(
        model,
        data.task.num_labels,
        seed=seed,
        trust_remote_code=trust_remote_code,
        causal_lm=data.task.causal_lm,
        pooling=pooling,
    )
    space = make_search_space(search_space, loaded.adapter.shape(loaded.model))
    frame = data.validation if split == "validation" else data.test
    tokenized = tokenize_split(frame, loaded.tokenizer, data.task, max_seq_length, cache_dir=default_cache_dir())
    evaluator = Evaluator(
        loaded.model,
        loaded.adapter,
        space,
        data.task,
        tokenized,
        batch_size=batch_size,
        flops_seq_len=max_seq_length,
        seed=seed,
    )
    return EvaluationSetup(evaluator=evaluator, loaded=loaded, data=data)


@dataclass(frozen=True)
class SupernetCheckpoint:
    """A super-network folder written by `nas-tune finetune`, as its consumers read it."""

    path: Path
    meta: dict[str, Any]  # supernet.json

    @property
    def search_space(self) -> str:
        return self.meta["search_space"]

    @property
    def max_seq_length(self) -> int:
        return self.meta["options"].get("max_seq_length", 128)

    def data_config(self, data_dir: str | None) -> DataConfig:
        """The data the super-network was trained with: the same seeded validation split is scored."""
        data = dict(self.meta["options"]["data"])
        data["text_columns"] = tuple(data.get("text_columns") or ())
        return DataConfig(**data, data_dir=data_dir)


def read_checkpoint(path: str | Path) -> SupernetCheckpoint:
    """One user-error sentence when `path` holds no (or a corrupted) super-network."""
    return SupernetCheckpoint(Path(path), read_supernet_meta(path))


def checkpoint_evaluator(
    checkpoint: SupernetCheckpoint,
    *,
    data_dir: str | None = None,
    search_space: str | None = None,
    split: str = "validation",
    batch_size: int = 64,
    seed: int = 0,
) -> EvaluationSetup:
    """The evaluator of `checkpoint` on its own data and sequence length, over its search space unless another is named."""
    return build_evaluator(
        str(checkpoint.path),
        checkpoint.data_config(data_dir),
        search_space or checkpoint.search_space,
        split=split,
        max_seq_length=checkpoint.max_seq_length,
        batch_size=batch_size,
        seed=seed,
    )
