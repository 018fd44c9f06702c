"""Analytical FLOPs of a sub-network for one sequence (2 FLOPs per multiply-add)."""

from __future__ import annotations

from transformers import PreTrainedModel

from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import SubNetwork


def count_flops(model: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork, seq_len: int = 128) -> int:
    """Transformer-layer FLOPs plus the pooler and classifier; embedding look-ups cost no FLOPs."""
    shape = adapter.shape(model)
    layers = sum(adapter.layer_flops(shape, len(h), len(u), seq_len) for h, u in zip(subnet.kept_heads(), subnet.kept_units()))
    head = 2 * shape.hidden_size * shape.hidden_size + 2 * shape.hidden_size * model.config.num_labels
    return layers + head
