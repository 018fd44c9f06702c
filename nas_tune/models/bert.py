"""BERT-family adapter (BERT, RoBERTa and checkpoints sharing their module layout, e.g. MiniLM)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel

from nas_tune.models import modeling_nas_tune as modeling
from nas_tune.models.adapter import ResidualBlock, Tap
from nas_tune.models.layered import LayeredAdapter, transformer_layer_flops
from nas_tune.models.slicing import head_rows
from nas_tune.models.subnetwork import ModelShape, SubNetwork

CUSTOM_CLASSES = {"bert": "NasTuneBertForSequenceClassification", "roberta": "NasTuneRobertaForSequenceClassification"}
# stock model type -> the config and classifier of its mean-pooled variant (a model type of its own)
MEAN_POOLED = {
    "bert": (modeling.NasTuneBertConfig, modeling.MeanPooledBertForSequenceClassification),
    "roberta": (modeling.NasTuneRobertaConfig, modeling.MeanPooledRobertaForSequenceClassification),
}
STOCK_TYPES = {config.model_type: stock for stock, (config, _) in MEAN_POOLED.items()}
for _config_class, _model_class in MEAN_POOLED.values():  # so that nas-tune loads its own folders without remote code
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_class, _model_class, exist_ok=True)


class BertFamilyAdapter(LayeredAdapter):
    model_types = ("bert", "roberta", *STOCK_TYPES)
    modeling_file = Path(__file__).with_name("modeling_nas_tune.py")
    poolings = ("token", "mean")

    def classifier_config(self, config: PreTrainedConfig, pooling: str) -> PreTrainedConfig | None:
        """Mean pooling: a copy of the base `config` as its mean-pooled model type, pointing at the modeling file
        (registered above, so `AutoModelForSequenceClassification` builds the mean-pooled class from it)."""
        if pooling == "token":
            return None
        config_class, model_class = MEAN_POOLED[STOCK_TYPES.get(config.model_type, config.model_type)]
        fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
        pooled = config_class.from_dict(fields)
        pooled.architectures = [model_class.__name__]
        pooled.auto_map = {
            "AutoConfig": f"{self.modeling_file.stem}.{config_class.__name__}",
            "AutoModelForSequenceClassification": f"{self.modeling_file.stem}.{model_class.__name__}",
        }
        return pooled

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def pooling_of(self, config: PreTrainedConfig) -> str:
        return "mean" if config.model_type in STOCK_TYPES else "token"

    def stock_model_type(self, model_type: str) -> str:
        return STOCK_TYPES.get(model_type, model_type)

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
            replace(attention, "self", modeling.EmptySelfAttention())
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
            return config  # a mean-pooled config already points at the modeling file
        config.nas_tune_layer_heads = heads
        config.nas_tune_layer_units = units
        config.nas_tune_head_dim = shape.head_dim
        if config.model_type not in STOCK_TYPES:
            class_name = CUSTOM_CLASSES[config.model_type]
            config.architectures = [class_name]
            config.auto_map = {"AutoModelForSequenceClassification": f"{self.modeling_file.stem}.{class_name}"}
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
        """The pooler (one token; or the mean of all tokens) and the classifier."""
        hidden = model.config.hidden_size
        pooling = hidden * seq_len if model.config.model_type in STOCK_TYPES else 2 * hidden * hidden
        return pooling + 2 * hidden * model.config.num_labels


def fits_stock_config(shape: ModelShape, heads: list[int], units: list[int]) -> bool:
    """Stock BERT configs describe dropped layers and a uniform FFN width, but not fewer heads."""
    return all(h == shape.num_heads for h in heads) and len(set(units)) <= 1
