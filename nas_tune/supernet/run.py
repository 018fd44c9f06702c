"""Fine-tune a super-network from user-level options (data, model, config) into a checkpoint folder."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nas_tune.data import DataConfig, default_cache_dir, load_task_data, tokenize_split
from nas_tune.export import set_label_names
from nas_tune.models import load_finetuned, load_model
from nas_tune.pruning.reorder import reorder_by_importance
from nas_tune.search_space import make_search_space
from nas_tune.supernet.head import initialise_head_bias
from nas_tune.supernet.strategies import require_distillation
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
    pooling: str = "auto",
    show_progress: bool = True,
    reorder: str = "none",
    init_from: str | None = None,
    teacher: str | None = None,
) -> FinetuneResult:
    """`reorder="importance"` permutes heads and neurons best-first before training (function unchanged),
    so the search spaces' "keep the first k" keeps the k most important.

    Two-stage training: `init_from` starts the super-network from a standard fine-tuned classifier of
    `model`'s architecture (its trained head then also scores the reordering; it keeps its pooling), and `teacher` distils every
    sub-network from such a fixed model instead of from the in-place largest sub-network.
    """
    if teacher is not None:
        require_distillation(config.strategy)
    data = load_task_data(data_config)
    num_labels, causal_lm = data.task.num_labels, data.task.causal_lm
    fixed_teacher = (
        None
        if teacher is None
        else load_finetuned(
            teacher, num_labels, model, option="--teacher", trust_remote_code=trust_remote_code, causal_lm=causal_lm
        ).model
    )
    if init_from is not None:
        loaded = load_finetuned(
            init_from, num_labels, model, option="--init-from", trust_remote_code=trust_remote_code, causal_lm=causal_lm
        )
    else:
        loaded = load_model(
            model,
            num_labels,
            seed=config.seed,
            trust_remote_code=trust_remote_code,
            causal_lm=causal_lm,
            pooling=pooling,
        )
    make_search_space(config.search_space, loaded.adapter.shape(loaded.model))  # fail early on a bad space
    set_label_names(
        loaded.model.config, data.task.label_names
    )  # the checkpoint, and every export cut from it, names its classes
    cache = default_cache_dir()
    train = tokenize_split(data.train, loaded.tokenizer, data.task, max_seq_length, cache_dir=cache)
    if config.head_init == "prior":  # before reordering, whose scores go through the head
        initialise_head_bias(loaded, train.labels)
    if reorder == "importance":
        reorder_by_importance(loaded, train, seed=config.seed)
    validation = tokenize_split(data.validation, loaded.tokenizer, data.task, max_seq_length, cache_dir=cache)
    run_info = {
        "base_model": loaded.source,
        "max_seq_length": max_seq_length,
        "reorder": reorder,
        "init_from": init_from and str(Path(init_from).resolve()),
        "teacher": teacher and str(Path(teacher).resolve()),
        "data": {k: v for k, v in asdict(data_config).items() if k != "data_dir"},
    }
    return finetune(
        loaded,
        data.task,
        train,
        validation,
        config,
        output,
        run_info=run_info,
        resume=resume,
        overwrite=overwrite,
        show_progress=show_progress,
        teacher=fixed_teacher,
    )
