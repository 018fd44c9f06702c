"""Modeling code for nas-tune decoder sub-networks (LLaMA, Mistral, Qwen2, Qwen3, GPT-2) a stock config cannot describe.

This file is copied into every exported decoder folder whose kept layers differ in query heads, key/value
heads or FFN width (or keep no heads or no FFN neurons at all; for GPT-2: keep fewer heads), and registered
in config.json's ``auto_map``, so the folder loads with plain ``transformers`` (``trust_remote_code=True``)
and without nas-tune installed. It must therefore import nothing but torch and transformers.

Why it is needed: a stock LLaMA-family config has one ``num_attention_heads``, ``num_key_value_heads`` and
``intermediate_size`` for all layers, and transformers 5.24 records ``per_layer_config`` overrides for these
models but still builds every layer from the global values; GPT-2 derives its head size from
``n_embd / n_head``, so fewer heads never fit. The per-layer sizes live in ``config.nas_tune_layer_heads``,
``config.nas_tune_layer_kv_heads`` and ``config.nas_tune_layer_units``, the head size in
``config.nas_tune_head_dim``.

The classes carry the stock names (``LlamaForCausalLM``), as transformers' ``pipeline`` checks class names.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn
from transformers.pytorch_utils import Conv1D


class EmptyAttention(nn.Module):
    """Self-attention of a layer whose heads were all pruned: adds only the output bias, if any.

    It has no ``layer_idx`` and never touches the KV cache, so the cache slots of the layers that still
    attend stay numbered 0.. in order (the cache's sequence length is read from slot 0). The output
    projection keeps its family's name, so its bias stays where the checkpoint has it.
    """

    def __init__(self, output_name: str, output: nn.Module):
        super().__init__()
        self.output_name = output_name
        self.add_module(output_name, output)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        output = getattr(self, self.output_name)
        return output(hidden_states.new_zeros(*hidden_states.shape[:-1], 0)), None


def _like(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=old.bias is not None)


def resize_llama_layer(layer: nn.Module, num_heads: int, num_kv_heads: int, num_units: int, head_dim: int) -> None:
    """Give one LLaMA-family decoder layer the shapes of a pruned layer (weights are loaded afterwards)."""
    attention, mlp = layer.self_attn, layer.mlp
    hidden = attention.o_proj.out_features
    if num_heads == 0:
        layer.self_attn = EmptyAttention("o_proj", _like(attention.o_proj, 0, hidden))
    else:
        attention.q_proj = _like(attention.q_proj, hidden, num_heads * head_dim)
        attention.k_proj = _like(attention.k_proj, hidden, num_kv_heads * head_dim)
        attention.v_proj = _like(attention.v_proj, hidden, num_kv_heads * head_dim)
        attention.o_proj = _like(attention.o_proj, num_heads * head_dim, hidden)
        attention.num_key_value_groups = num_heads // num_kv_heads
    mlp.gate_proj = _like(mlp.gate_proj, hidden, num_units)
    mlp.up_proj = _like(mlp.up_proj, hidden, num_units)
    mlp.down_proj = _like(mlp.down_proj, num_units, hidden)


def _gpt2_projection(out_features: int, in_features: int) -> nn.Module:
    """GPT-2's Conv1D(out, in) (weight stored transposed); an nn.Linear without inputs, which Conv1D cannot compute."""
    return Conv1D(out_features, in_features) if in_features else nn.Linear(0, out_features)


def resize_gpt2_layer(layer: nn.Module, num_heads: int, num_kv_heads: int, num_units: int, head_dim: int) -> None:
    """Give one GPT-2 block the shapes of a pruned block."""
    attention, mlp = layer.attn, layer.mlp
    hidden, width = attention.embed_dim, num_heads * head_dim
    if num_heads == 0:
        layer.attn = EmptyAttention("c_proj", _gpt2_projection(hidden, 0))
    else:
        attention.c_attn = _gpt2_projection(3 * width, hidden)
        attention.c_proj = _gpt2_projection(hidden, width)
        attention.split_size, attention.num_heads = width, num_heads
    mlp.c_fc = _gpt2_projection(num_units, hidden)
    mlp.c_proj = _gpt2_projection(hidden, num_units)


def _pruned(stock: type, decoder: str, layers: str, attention: str, resize) -> type:
    """`stock` with its decoder layers resized to the per-layer sizes in the config."""

    class Pruned(stock):
        def __init__(self, config):
            super().__init__(config)
            blocks = getattr(getattr(self, decoder), layers)
            sizes = zip(config.nas_tune_layer_heads, config.nas_tune_layer_kv_heads, config.nas_tune_layer_units)
            for block, (heads, kv_heads, units) in zip(blocks, sizes):
                resize(block, heads, kv_heads, units, config.nas_tune_head_dim)
            attending = [
                getattr(block, attention) for block in blocks if hasattr(getattr(block, attention), "layer_idx")
            ]
            for slot, module in enumerate(attending):
                module.layer_idx = slot
            self.post_init()

    Pruned.__name__ = Pruned.__qualname__ = stock.__name__
    return Pruned


def _llama_family(stock: type) -> type:
    return _pruned(stock, "model", "layers", "self_attn", resize_llama_layer)


def _gpt2(stock: type) -> type:
    return _pruned(stock, "transformer", "h", "attn", resize_gpt2_layer)


LlamaForCausalLM = _llama_family(transformers.LlamaForCausalLM)
LlamaForSequenceClassification = _llama_family(transformers.LlamaForSequenceClassification)
MistralForCausalLM = _llama_family(transformers.MistralForCausalLM)
MistralForSequenceClassification = _llama_family(transformers.MistralForSequenceClassification)
Qwen2ForCausalLM = _llama_family(transformers.Qwen2ForCausalLM)
Qwen2ForSequenceClassification = _llama_family(transformers.Qwen2ForSequenceClassification)
Qwen3ForCausalLM = _llama_family(transformers.Qwen3ForCausalLM)
Qwen3ForSequenceClassification = _llama_family(transformers.Qwen3ForSequenceClassification)
GPT2LMHeadModel = _gpt2(transformers.GPT2LMHeadModel)
GPT2ForSequenceClassification = _gpt2(transformers.GPT2ForSequenceClassification)
