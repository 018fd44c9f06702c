"""Parameter count of a sub-network, equal to `numel` of the exported model's parameters."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedModel

from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import ModelShape, SubNetwork


@dataclass(frozen=True)
class ParameterCount:
    layer_params: int  # transformer layers only: what pruning can remove
    layer_fraction: float  # of the full model's layer parameters: nas-tune's main size measure
    total_params: int  # plus embeddings, pooler and classifier / LM head (never pruned)
    total_fraction: float  # the paper's measure (embeddings are about half of MiniLM)
    embedding_params: int = 0  # input token embeddings (part of total_params)
    output_head_params: int = 0  # a separate LM head's weights; 0 when it is tied to the input embeddings


def _layer_counts(adapter: ModelAdapter, shape: ModelShape, subnet: SubNetwork) -> tuple[int, int]:
    """(layer parameters of `subnet`, layer parameters of the full model)."""
    full_layers = shape.num_layers * adapter.layer_parameter_count(
        shape, shape.num_heads, shape.ffn_size, shape.kv_heads
    )
    layers = sum(
        adapter.layer_parameter_count(shape, len(h), len(u), len(kv))
        for h, u, kv in zip(subnet.kept_heads(), subnet.kept_units(), subnet.kept_kv_heads(shape))
    )
    return layers, full_layers


def layer_fraction(adapter: ModelAdapter, shape: ModelShape, subnet: SubNetwork) -> float:
    """The fraction of the full model's layer parameters `subnet` keeps (no model needed)."""
    layers, full_layers = _layer_counts(adapter, shape, subnet)
    return layers / full_layers


def count_parameters(model: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork) -> ParameterCount:
    layers, full_layers = _layer_counts(adapter, adapter.shape(model), subnet)
    full_total = sum(p.numel() for p in model.parameters())
    fixed = full_total - full_layers
    embeddings = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    untied_head = output is not None and output.weight is not embeddings
    return ParameterCount(
        layer_params=layers,
        layer_fraction=layers / full_layers,
        total_params=fixed + layers,
        total_fraction=(fixed + layers) / full_total,
        embedding_params=embeddings.numel(),
        output_head_params=output.weight.numel() if untied_head else 0,
    )
