"""Build an Evaluator from user-level options: the one place that wires data, model and space together."""

from __future__ import annotations

from dataclasses import dataclass

from nas_tune.data import DataConfig, TaskData, default_cache_dir, load_task_data, tokenize_split
from nas_tune.evaluate.evaluator import Evaluator
from nas_tune.models import LoadedModel, load_model
from nas_tune.search_space import make_search_space
from nas_tune.settings import SPLITS  # noqa: F401  (re-exported)


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
) -> EvaluationSetup:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    data = load_task_data(data_config)
    loaded = load_model(model, data.task.num_labels, seed=seed, trust_remote_code=trust_remote_code, causal_lm=data.task.causal_lm)
    space = make_search_space(search_space, loaded.adapter.shape(loaded.model))
    frame = data.validation if split == "validation" else data.test
    tokenized = tokenize_split(frame, loaded.tokenizer, data.task, max_seq_length, cache_dir=default_cache_dir())
    evaluator = Evaluator(loaded.model, loaded.adapter, space, data.task, tokenized, batch_size=batch_size, flops_seq_len=max_seq_length, seed=seed)
    return EvaluationSetup(evaluator=evaluator, loaded=loaded, data=data)
