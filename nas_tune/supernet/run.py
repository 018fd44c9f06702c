"""Fine-tune a super-network from user-level options (data, model, config) into a checkpoint folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nas_tune.data import DataConfig, default_cache_dir, load_task_data, tokenize_split
from nas_tune.models import load_model
from nas_tune.search_space import make_search_space
from nas_tune.supernet.train import FinetuneConfig, FinetuneResult, finetune


def finetune_supernet(
    model: str | None,
    data_config: DataConfig,
    config: FinetuneConfig,
    output: str | Path,
    *,
    max_seq_length: int = 128,
    resume: bool = False,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    show_progress: bool = True,
    reorder: str = "none",
) -> FinetuneResult:
    """`reorder="importance"` permutes heads and neurons best-first before training (function unchanged),
    so the search spaces' "keep the first k" keeps the k most important."""
    data = load_task_data(data_config)
    loaded = load_model(model, data.task.num_labels, seed=config.seed, trust_remote_code=trust_remote_code)
    make_search_space(config.search_space, loaded.adapter.shape(loaded.model))  # fail early on a bad space
    cache = default_cache_dir()
    train = tokenize_split(data.train, loaded.tokenizer, data.task, max_seq_length, cache_dir=cache)
    if reorder == "importance":
        from nas_tune.baselines.reorder import reorder_by_importance  # baselines import this module

        reorder_by_importance(loaded, train, seed=config.seed)
    validation = tokenize_split(data.validation, loaded.tokenizer, data.task, max_seq_length, cache_dir=cache)
    run_info = {"base_model": loaded.source, "max_seq_length": max_seq_length, "reorder": reorder,
                "data": {k: v for k, v in asdict(data_config).items() if k != "data_dir"}}
    return finetune(loaded, data.task, train, validation, config, output, run_info=run_info, resume=resume,
                    overwrite=overwrite, show_progress=show_progress)
