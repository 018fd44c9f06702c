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
    total_params: int  # plus embeddings, pooler and classifier (never pruned)
    total_fraction: float  # the paper's measure (embeddings are about half of MiniLM)


def _layer_counts(adapter: ModelAdapter, shape: ModelShape, subnet: SubNetwork) -> tuple[int, int]:
    """(layer parameters of `subnet`, layer parameters of the full model)."""
    full_layers = shape.num_layers * adapter.layer_parameter_count(shape, shape.num_heads, shape.ffn_size)
    layers = sum(adapter.layer_parameter_count(shape, len(h), len(u)) for h, u in zip(subnet.kept_heads(), subnet.kept_units()))
    return layers, full_layers


def layer_fraction(adapter: ModelAdapter, shape: ModelShape, subnet: SubNetwork) -> float:
    """The fraction of the full model's layer parameters `subnet` keeps (no model needed)."""
    layers, full_layers = _layer_counts(adapter, shape, subnet)
    return layers / full_layers


def count_parameters(model: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork) -> ParameterCount:
    layers, full_layers = _layer_counts(adapter, adapter.shape(model), subnet)
    full_total = sum(p.numel() for p in model.parameters())
    fixed = full_total - full_layers
    return ParameterCount(
        layer_params=layers,
        layer_fraction=layers / full_layers,
        total_params=fixed + layers,
        total_fraction=(fixed + layers) / full_total,
    )
