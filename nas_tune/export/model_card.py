"""The README.md of an exported model: what it is, how good and how big, and how to load it.

Built from the same record as `nas_tune_export.json`, so the card never says something the record does not;
rows whose facts are unknown (e.g. a plain `nas-tune export` has no test metrics) are left out, not guessed.
The YAML header uses huggingface_hub's `ModelCardData`, so the folder uploads to the hub as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from transformers import PretrainedConfig

from nas_tune.models.subnetwork import SubNetwork


def _per_layer(values: list[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else ", ".join(map(str, values))


# What a metric row says for a causal LM (the search's error is a function of perplexity; say which).
LM_METRIC_NAMES = {"nll": "NLL (nats per token)", "error": "error (1 - 1/perplexity)"}


def is_causal_lm(config: PretrainedConfig) -> bool:
    """A language model (LLaMA's `...ForCausalLM`, GPT-2's `GPT2LMHeadModel`), not a classifier."""
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in config.architectures or ())


def _structure(subnet: SubNetwork, kv_heads: list[int] | None) -> str:
    total_layers = len(subnet.heads)  # one entry per super-network layer
    if not subnet.layers:
        return f"no transformer layer kept (of {total_layers}): embeddings and output head only"
    heads = [len(h) for h in subnet.kept_heads()]
    units = [len(u) for u in subnet.kept_units()]
    groups = f"; key/value heads per kept layer: {_per_layer(kv_heads)}" if kv_heads else ""
    return (
        f"{len(subnet.layers)} of {total_layers} layers kept ({', '.join(map(str, subnet.layers))}); "
        f"attention heads per kept layer: {_per_layer(heads)}{groups}; FFN neurons per kept layer: {_per_layer(units)}"
    )


def _kv_heads(config: PretrainedConfig, subnet: SubNetwork) -> list[int] | None:
    """Key/value heads of each kept layer of a family with grouped-query attention (None for the others)."""
    per_layer = getattr(config, "nas_tune_layer_kv_heads", None)
    if per_layer is not None:
        return list(per_layer)
    stock = getattr(config, "num_key_value_heads", None)
    return None if stock is None else [stock] * len(subnet.layers)


def _metric_rows(split: str, metrics: dict[str, float] | None, causal_lm: bool) -> list[tuple[str, str]]:
    names = LM_METRIC_NAMES if causal_lm else {}
    ordered = sorted(
        (metrics or {}).items(), key=lambda item: causal_lm and item[0] != "perplexity"
    )  # perplexity first
    return [(f"{split} {names.get(name, name.replace('_', ' '))}", f"{value:.4f}") for name, value in ordered]


def _latency_row(latency: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not latency:
        return [("latency", "not measured")]
    return [
        (
            "latency",
            f"{latency['seconds'] * 1000:.1f} ms per forward (batch {latency['batch_size']}, {latency['seq_len']} tokens, "
            f"PyTorch on {latency['device']}, {latency['threads']} thread{'s' if latency['threads'] != 1 else ''}; "
            "measured on the exporting machine)",
        )
    ]


def _usage(folder_name: str, remote: bool, config: PretrainedConfig, pair: bool) -> str:
    remote_arg = ", trust_remote_code=True" if remote else ""
    if is_causal_lm(config):
        return "\n".join(
            [
                "```python",
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                "",
                f'path = "path/to/{folder_name}"',
                f"model = AutoModelForCausalLM.from_pretrained(path{remote_arg}).eval()",
                f"tokenizer = AutoTokenizer.from_pretrained(path{remote_arg})",
                'inputs = tokenizer("To be, or not to be", return_tensors="pt")',
                "tokens = model.generate(**inputs, max_new_tokens=20, do_sample=False)  # greedy, with the KV cache",
                "print(tokenizer.decode(tokens[0], skip_special_tokens=True))",
                "```",
            ]
        )
    texts = '"A first sentence.", "A second sentence."' if pair else '"A sentence to classify."'
    regression = config.num_labels == 1
    predict = (
        "score = model(**inputs).logits.item()"
        if regression
        else "label = model.config.id2label[model(**inputs).logits.argmax(-1).item()]"
    )
    return "\n".join(
        [
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f'path = "path/to/{folder_name}"',
            f"model = AutoModelForSequenceClassification.from_pretrained(path{remote_arg}).eval()",
            f"tokenizer = AutoTokenizer.from_pretrained(path{remote_arg})",
            f'inputs = tokenizer({texts}, return_tensors="pt")',
            predict,
            "```",
        ]
    )


def model_card(folder_name: str, subnet: SubNetwork, record: dict[str, Any], config: PretrainedConfig) -> ModelCard:
    """`record`: what `nas_tune_export.json` holds (sizes, provenance, metrics when known)."""
    base = str(record.get("base_model") or record.get("source_model") or record.get("checkpoint") or "unknown")
    task = record.get("task")
    causal_lm = is_causal_lm(config)
    labels = [config.id2label[i] for i in sorted(config.id2label)] if config.num_labels > 1 else []
    rows = [("base model", f"`{base}`")]
    if task:
        kind = (
            " (causal language modelling)"
            if causal_lm
            else f" (labels: {', '.join(labels)})"
            if labels
            else " (regression)"
        )
        rows.append(("task", task + kind))
    if "config" in record:
        space = record.get("search_space")
        rows.append(
            ("sub-network", f"`{json.dumps(record['config'])}`" + (f" (search space `{space}`)" if space else ""))
        )
    rows.append(("structure", _structure(subnet, _kv_heads(config, subnet))))
    rows.append(
        (
            "layer parameters",
            f"{record['layer_params']:,} ({record['layer_fraction']:.1%} of the unpruned model's layers)",
        )
    )
    rows.append(
        (
            "total parameters",
            f"{record['total_params']:,} ({record['total_fraction']:.1%} of the unpruned model, embeddings included)",
        )
    )
    rows += _metric_rows("validation", record.get("validation_metrics"), causal_lm)
    rows += _metric_rows("test", record.get("test_metrics"), causal_lm)
    rows += _latency_row(record.get("latency"))
    if record.get("picks"):
        rows.append(("picked as", "; ".join(f"{name}: {text}" for name, text in record["picks"].items())))
    if "trial_id" in record:
        rows.append(("search trial", str(record["trial_id"])))
    if record.get("data_source"):
        rows.append(("data", record["data_source"]))
    if record.get("repair"):
        rows.append(("repair", "output projections refitted by least squares to the full model's layer outputs"))
    remote = bool(record.get("needs_trust_remote_code"))
    notes = []
    if remote:
        modeling_file = (
            next(iter(config.auto_map.values())).split(".")[0] + ".py"
        )  # auto_map: {"AutoModel...": "file.Class"}
        notes.append(
            "The stock transformers classes cannot describe this model (e.g. fewer heads, widths that differ per layer, or "
            f"a task head that reads the mean of the token states), so the folder carries its own modeling code (`{modeling_file}`, torch and transformers only): load "
            "it with `trust_remote_code=True`; nas-tune need not be installed."
        )
    if record.get("no_better_than_trivial"):
        notes.append(f"**Warning**: on the test split this model is no better than {record['no_better_than_trivial']}.")
    table = "\n".join(["| | |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows)])
    body = "\n\n".join(
        [
            f"# {folder_name}: a pruned `{base}`" + (f" for {task}" if task else ""),
            "A sub-network cut out of a fine-tuned super-network by nas-tune (structural pruning by "
            "multi-objective neural architecture search): layers, attention heads and FFN neurons were removed physically, "
            "so the model is smaller and faster, not masked.",
            table,
            *notes,
            "## How to load",
            _usage(folder_name, remote, config, pair=len(record.get("text_columns") or ()) == 2),
            f"Written by nas-tune {record.get('nas_tune_version', '')}; `nas_tune_export.json` holds the full record.",
        ]
    )
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation" if causal_lm else "text-classification",
        tags=["nas-tune", "pruned"],
        base_model=None if Path(base).exists() else base,
    )  # the hub's field names a hub model, not a folder
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def write_model_card(
    folder: Path, subnet: SubNetwork, record: dict[str, Any], config: PretrainedConfig, *, name: str
) -> Path:
    """`name`: the folder's final name (`folder` may be a staging folder that is renamed afterwards)."""
    path = folder / "README.md"
    model_card(name, subnet, record, config).save(path)
    return path
