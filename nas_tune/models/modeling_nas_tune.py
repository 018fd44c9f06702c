"""Modeling code for nas-tune BERT/RoBERTa models that the stock classes cannot describe.

This file is copied into every exported model folder whose layers differ in head count or FFN width
(or keep fewer heads than the original), or whose classifier reads the mean of the token states, and
registered in config.json's ``auto_map``, so the folder loads with plain ``transformers``
(``trust_remote_code=True``) and without nas-tune installed. It must therefore import nothing but torch
and transformers.

Why it is needed: BERT derives the head size from ``hidden_size / num_attention_heads``, so a layer with
fewer heads cannot be expressed by the stock config. The per-layer sizes live in
``config.nas_tune_layer_heads`` and ``config.nas_tune_layer_units``; ``config.nas_tune_head_dim`` keeps
the original head size.

Mean pooling (the ``MeanPooled*`` classes: how sentence-transformers checkpoints such as all-MiniLM-L6-v2
were trained) has no stock config field either. Their configs have their own ``model_type``
(``nas_tune_bert``), so that loading such a folder without this file fails loudly instead of silently
reading the [CLS] token.

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
    if getattr(config, "nas_tune_layer_heads", None) is None:  # a mean-pooled model of the stock shape
        return
    for layer, heads, units in zip(encoder.layer, config.nas_tune_layer_heads, config.nas_tune_layer_units):
        resize_layer(layer, heads, units, config.nas_tune_head_dim)


def mean_of_tokens(states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The average of the non-padding tokens' states (sentence-transformers' mean pooling): [batch, hidden]."""
    if attention_mask is None:
        return states.mean(dim=1)
    weights = attention_mask[..., None].to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class PoolingClassifier:
    """The stock forward for ``pooling = "cls"``; with ``pooling = "mean"`` the head reads the tokens' mean."""

    pooling = "cls"

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        **kwargs,
    ):
        if self.pooling != "mean":
            return super().forward(
                input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels, **kwargs
            )
        outputs = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classify(mean_of_tokens(outputs.last_hidden_state, attention_mask))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return transformers.modeling_outputs.SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BertForSequenceClassification(PoolingClassifier, transformers.BertForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.bert.encoder, config)
        if self.pooling == "mean":
            self.bert.pooler = None
        self.post_init()

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class RobertaForSequenceClassification(PoolingClassifier, transformers.RobertaForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        resize_encoder(self.roberta.encoder, config)
        self.post_init()

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled[:, None, :])  # RoBERTa's head reads position 0 of what it is given


class NasTuneBertConfig(transformers.BertConfig):
    model_type = "nas_tune_bert"


class NasTuneRobertaConfig(transformers.RobertaConfig):
    model_type = "nas_tune_roberta"


class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
    config_class = NasTuneBertConfig
    pooling = "mean"
    _keys_to_ignore_on_load_unexpected = [r"pooler"]  # the pre-trained pooler reads [CLS]: not used


class MeanPooledRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = NasTuneRobertaConfig
    pooling = "mean"


# The names config.json's auto_map uses (nas_tune.models.bert).
NasTuneBertForSequenceClassification = BertForSequenceClassification
NasTuneRobertaForSequenceClassification = RobertaForSequenceClassification
