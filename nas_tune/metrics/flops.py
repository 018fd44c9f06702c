"""Analytical FLOPs of a sub-network for one sequence (2 FLOPs per multiply-add)."""

from __future__ import annotations

from transformers import PreTrainedModel

from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import SubNetwork


def count_flops(model: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork, seq_len: int = 128) -> int:
    """Layer FLOPs plus what follows the layers (classifier or LM head); embedding look-ups cost no FLOPs."""
    shape = adapter.shape(model)
    layers = sum(
        adapter.layer_flops(shape, len(h), len(u), seq_len, len(kv))
        for h, u, kv in zip(subnet.kept_heads(), subnet.kept_units(), subnet.kept_kv_heads(shape))
    )
    return layers + adapter.output_flops(model, seq_len)
