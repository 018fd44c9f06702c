"""Turn a sub-network into a standalone, physically smaller Hugging Face model folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from nas_tune import __version__
from nas_tune.export.model_card import write_model_card
from nas_tune.io import atomic_folder, atomic_write_json, prepare_output_dir
from nas_tune.metrics.parameters import count_parameters
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import SubNetwork

PROVENANCE_FILE = "nas_tune_export.json"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    layer_params: int
    layer_fraction: float
    total_params: int
    needs_remote_code: bool  # True: load with trust_remote_code=True (modeling file in the folder)


def set_label_names(config: PreTrainedConfig, label_names: Sequence[str]) -> None:
    """`label_names[i]` names class i (the task's labels), so the model predicts "entailment", not "LABEL_0";
    no names (regression) leaves the config as it is."""
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}


def export_subnetwork(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    adapter: ModelAdapter,
    subnet: SubNetwork,
    output_dir: str | Path,
    *,
    provenance: dict[str, Any] | None = None,
    label_names: Sequence[str] = (),
    overwrite: bool = False,
) -> ExportResult:
    """Write `save_pretrained` weights, tokenizer, provenance and a model card; the folder appears complete or not at all.

    `label_names`: the task's class names (see `set_label_names`); without them the model keeps its config's labels.
    """
    output_dir = prepare_output_dir(output_dir, overwrite=overwrite)
    small = adapter.extract(model, subnet)
    set_label_names(small.config, label_names)
    size = count_parameters(model, adapter, subnet)
    with atomic_folder(output_dir) as staging:
        needs_remote_code = adapter.save(small, tokenizer, staging)
        record = {
            "nas_tune_version": __version__,
            "subnetwork": subnet.to_json(),
            "layer_params": size.layer_params,
            "layer_fraction": size.layer_fraction,
            "total_params": size.total_params,
            "total_fraction": size.total_fraction,
            "needs_trust_remote_code": needs_remote_code,
            **(provenance or {}),
        }
        atomic_write_json(staging / PROVENANCE_FILE, record)
        write_model_card(staging, subnet, record, small.config, name=output_dir.name)
    return ExportResult(output_dir, size.layer_params, size.layer_fraction, size.total_params, needs_remote_code)
