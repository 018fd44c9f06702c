"""Modeling code for nas-tune LLaMA-family sub-networks (LLaMA, Mistral, Qwen2, Qwen3) a stock config cannot describe.

This file is copied into every exported decoder folder whose kept layers differ in query heads, key/value
heads or FFN width (or keep no heads or no FFN neurons at all), and registered in config.json's ``auto_map``,
so the folder loads with plain ``transformers`` (``trust_remote_code=True``) and without nas-tune installed.
It must therefore import nothing but torch and transformers.

Why it is needed: a stock LLaMA-family config has one ``num_attention_heads``, ``num_key_value_heads`` and
``intermediate_size`` for all layers, and transformers 5.24 records ``per_layer_config`` overrides for these
models but still builds every layer from the global values. The per-layer sizes live in
``config.nas_tune_layer_heads``, ``config.nas_tune_layer_kv_heads`` and ``config.nas_tune_layer_units``.

The classes carry the stock names (``LlamaForCausalLM``), as transformers' ``pipeline`` checks class names.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn


class EmptyAttention(nn.Module):
    """Self-attention of a layer whose heads were all pruned: adds only the output bias, if any.

    It has no ``layer_idx`` and never touches the KV cache, so the cache slots of the layers that still
    attend stay numbered 0.. in order (the cache's sequence length is read from slot 0).
    """

    def __init__(self, o_proj: nn.Linear):
        super().__init__()
        self.o_proj = o_proj  # reads zero heads; kept so that its bias (if any) stays where the checkpoint has it

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.o_proj(hidden_states.new_zeros(*hidden_states.shape[:-1], 0)), None


def _like(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=old.bias is not None)


def resize_layer(layer: nn.Module, num_heads: int, num_kv_heads: int, num_units: int, head_dim: int) -> None:
    """Give one decoder layer the shapes of a pruned layer (weights are loaded afterwards)."""
    attention, mlp = layer.self_attn, layer.mlp
    hidden = attention.o_proj.out_features
    if num_heads == 0:
        layer.self_attn = EmptyAttention(_like(attention.o_proj, 0, hidden))
    else:
        attention.q_proj = _like(attention.q_proj, hidden, num_heads * head_dim)
        attention.k_proj = _like(attention.k_proj, hidden, num_kv_heads * head_dim)
        attention.v_proj = _like(attention.v_proj, hidden, num_kv_heads * head_dim)
        attention.o_proj = _like(attention.o_proj, num_heads * head_dim, hidden)
        attention.num_key_value_groups = num_heads // num_kv_heads
    mlp.gate_proj = _like(mlp.gate_proj, hidden, num_units)
    mlp.up_proj = _like(mlp.up_proj, hidden, num_units)
    mlp.down_proj = _like(mlp.down_proj, num_units, hidden)


def resize_decoder(decoder: nn.Module, config) -> None:
    sizes = zip(config.nas_tune_layer_heads, config.nas_tune_layer_kv_heads, config.nas_tune_layer_units)
    for layer, (heads, kv_heads, units) in zip(decoder.layers, sizes):
        resize_layer(layer, heads, kv_heads, units, config.head_dim)
    attending = [layer.self_attn for layer in decoder.layers if hasattr(layer.self_attn, "layer_idx")]
    for slot, attention in enumerate(attending):
        attention.layer_idx = slot


def _pruned(stock: type) -> type:
    """`stock` with its decoder layers resized to the per-layer sizes in the config."""

    class Pruned(stock):
        def __init__(self, config):
            super().__init__(config)
            resize_decoder(self.model, config)
            self.post_init()

    Pruned.__name__ = Pruned.__qualname__ = stock.__name__
    return Pruned


LlamaForCausalLM = _pruned(transformers.LlamaForCausalLM)
LlamaForSequenceClassification = _pruned(transformers.LlamaForSequenceClassification)
MistralForCausalLM = _pruned(transformers.MistralForCausalLM)
MistralForSequenceClassification = _pruned(transformers.MistralForSequenceClassification)
Qwen2ForCausalLM = _pruned(transformers.Qwen2ForCausalLM)
Qwen2ForSequenceClassification = _pruned(transformers.Qwen2ForSequenceClassification)
Qwen3ForCausalLM = _pruned(transformers.Qwen3ForCausalLM)
Qwen3ForSequenceClassification = _pruned(transformers.Qwen3ForSequenceClassification)
