"""Modeling code for nas-tune sub-networks that the stock BERT/RoBERTa config cannot describe.

This file is copied into every exported model folder whose layers differ in head count or FFN width
(or keep fewer heads than the original), and registered in config.json's ``auto_map``, so the folder
loads with plain ``transformers`` (``trust_remote_code=True``) and without nas-tune installed.
It must therefore import nothing but torch and transformers.

Why it is needed: BERT derives the head size from ``hidden_size / num_attention_heads``, so a layer with
fewer heads cannot be expressed by the stock config. The per-layer sizes live in
``config.nas_tune_layer_heads`` and ``config.nas_tune_layer_units``; ``config.nas_tune_head_dim`` keeps
the original head size.

The classes carry the stock names (``BertForSequenceClassification``): transformers' ``pipeline`` checks a
model's class name against its supported models and would otherwise log a screen-long "not supported" error.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn


class EmptySelfAttention(nn.Module):
    """Self-attention of a layer whose heads were all pruned: contributes nothing (the output bias remains)."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def resize_layer(layer: nn.Module, num_heads: int, num_units: int, head_dim: int) -> None:
    """Give one BERT-style layer the shapes of a pruned layer (weights are loaded afterwards)."""
    attention = layer.attention
    hidden = attention.output.dense.out_features
    width = num_heads * head_dim
    if num_heads == 0:
        attention.self = EmptySelfAttention()
    else:
        for name in ("query", "key", "value"):
            setattr(attention.self, name, nn.Linear(hidden, width))
    attention.output.dense = nn.Linear(width, hidden)
    layer.intermediate.dense = nn.Linear(hidden, num_units)
    layer.output.dense = nn.Linear(num_units, hidden)


def resize_encoder(encoder: nn.Module, config) -> None:
    for layer, heads, units in zip(encoder.layer, config.nas_tune_layer_heads, config.nas_tune_layer_units):
        resize_layer(layer, heads, units, config.nas_tune_head_dim)


class BertForSequenceClassification(transformers.BertForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.bert.encoder, config)
        self.post_init()


class RobertaForSequenceClassification(transformers.RobertaForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.roberta.encoder, config)
        self.post_init()


# The names config.json's auto_map uses (nas_tune.models.bert.CUSTOM_CLASSES).
NasTuneBertForSequenceClassification = BertForSequenceClassification
NasTuneRobertaForSequenceClassification = RobertaForSequenceClassification
