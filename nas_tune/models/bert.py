"""BERT-family adapter (BERT, RoBERTa and checkpoints sharing their module layout, e.g. MiniLM)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from nas_tune.models.adapter import ResidualBlock, Tap
from nas_tune.models.layered import LayeredAdapter, transformer_layer_flops
from nas_tune.models.modeling_nas_tune import EmptySelfAttention
from nas_tune.models.slicing import head_rows
from nas_tune.models.subnetwork import ModelShape, SubNetwork

CUSTOM_CLASSES = {"bert": "NasTuneBertForSequenceClassification", "roberta": "NasTuneRobertaForSequenceClassification"}


class BertFamilyAdapter(LayeredAdapter):
    model_types = ("bert", "roberta")
    modeling_file = Path(__file__).with_name("modeling_nas_tune.py")

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def head_bias(self, model: PreTrainedModel) -> nn.Parameter | None:
        head = model.classifier  # BERT: a Linear; RoBERTa: dense -> out_proj
        return getattr(head, "out_proj", head).bias

    def _config_shape(self, model: PreTrainedModel) -> ModelShape:
        config = model.config
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            head_dim=config.hidden_size // config.num_attention_heads,
            hidden_size=config.hidden_size,
            ffn_size=config.intermediate_size,
        )

    def _set_layers(self, model: PreTrainedModel, layers: nn.ModuleList) -> None:
        model.base_model.encoder.layer = layers

    def _output_projections(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
        return layer.attention.output.dense, layer.output.dense

    def _attention(self, layer: nn.Module) -> nn.Module:
        return layer.attention.self

    def residual_blocks(self, layer: nn.Module) -> tuple[ResidualBlock, ...]:
        """Post-LN: each block's output module gets (projection input, residual) and sums them into its LayerNorm."""
        attention, ffn = layer.attention.output, layer.output
        return (
            ResidualBlock("attention", attention.dense, Tap(attention, 1), Tap(attention.LayerNorm)),
            ResidualBlock("ffn", ffn.dense, Tap(ffn, 1), Tap(ffn.LayerNorm)),
        )

    def slice_layer(self, layer, heads, units, shape, slice_linear, replace=setattr) -> None:
        attention = layer.attention
        rows = head_rows(heads, shape.head_dim)
        if heads:
            for name in ("query", "key", "value"):
                replace(attention.self, name, slice_linear(getattr(attention.self, name), rows, None))
        else:
            replace(attention, "self", EmptySelfAttention())
        replace(attention.output, "dense", slice_linear(attention.output.dense, None, rows))
        unit_index = torch.tensor(units, dtype=torch.long)
        replace(layer.intermediate, "dense", slice_linear(layer.intermediate.dense, unit_index, None))
        replace(layer.output, "dense", slice_linear(layer.output.dense, None, unit_index))

    def _pruned_config(self, model: PreTrainedModel, subnet: SubNetwork):
        shape = self.shape(model)
        config = copy.deepcopy(model.config)
        heads = [len(h) for h in subnet.kept_heads()]
        units = [len(u) for u in subnet.kept_units()]
        config.num_hidden_layers = len(subnet.layers)
        if fits_stock_config(shape, heads, units):
            config.intermediate_size = units[0] if units else shape.ffn_size
            return config
        config.nas_tune_layer_heads = heads
        config.nas_tune_layer_units = units
        config.nas_tune_head_dim = shape.head_dim
        class_name = CUSTOM_CLASSES[config.model_type]
        config.architectures = [class_name]
        config.auto_map = {"AutoModelForSequenceClassification": f"modeling_nas_tune.{class_name}"}
        return config

    def layer_parameter_count(
        self, shape: ModelShape, num_heads: int, num_units: int, num_kv_heads: int | None = None
    ) -> int:
        hidden, width = shape.hidden_size, num_heads * shape.head_dim
        attention = 3 * (hidden * width + width) + (width * hidden + hidden) + 2 * hidden
        feed_forward = (hidden * num_units + num_units) + (num_units * hidden + hidden) + 2 * hidden
        return attention + feed_forward

    def layer_flops(
        self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int, num_kv_heads: int | None = None
    ) -> int:
        width = num_heads * shape.head_dim
        return transformer_layer_flops(seq_len, shape.hidden_size, width, width, num_units, ffn_matrices=2)

    def output_flops(self, model: PreTrainedModel, seq_len: int) -> int:
        """The pooler (one token) and the classifier."""
        hidden = model.config.hidden_size
        return 2 * hidden * hidden + 2 * hidden * model.config.num_labels


def fits_stock_config(shape: ModelShape, heads: list[int], units: list[int]) -> bool:
    """Stock BERT configs describe dropped layers and a uniform FFN width, but not fewer heads."""
    return all(h == shape.num_heads for h in heads) and len(set(units)) <= 1
