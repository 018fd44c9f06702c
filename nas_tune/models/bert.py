"""BERT-family adapter (BERT, RoBERTa and checkpoints sharing their module layout, e.g. MiniLM)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from nas_tune.export.modeling_nas_tune import EmptySelfAttention
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import ModelShape, SubNetwork

CUSTOM_CLASSES = {"bert": "NasTuneBertForSequenceClassification", "roberta": "NasTuneRobertaForSequenceClassification"}


def _mask_head_outputs(module, args, *, mask: torch.Tensor, head_dim: int):
    (context,) = args[:1]
    shaped = context.unflatten(-1, (-1, head_dim)) * mask.to(context.dtype).unsqueeze(-1)
    return (shaped.flatten(-2), *args[1:])


def _mask_units(module, args, *, mask: torch.Tensor):
    return (args[0] * mask.to(args[0].dtype), *args[1:])


def _slice_weights(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias of `linear` restricted to output `rows` / input `cols` (differentiable)."""
    weight, bias = linear.weight, linear.bias
    if rows is not None:
        weight = weight.index_select(0, rows)
        bias = bias.index_select(0, rows) if bias is not None else None
    if cols is not None:
        weight = weight.index_select(1, cols)
    return weight, bias


def _sliced_copy(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    """Slice a Linear in place into an independent smaller one (for extraction)."""
    with torch.no_grad():
        weight, bias = _slice_weights(linear, rows, cols)
    linear.weight = nn.Parameter(weight.contiguous().clone())
    if bias is not None:
        linear.bias = nn.Parameter(bias.clone())
    linear.out_features, linear.in_features = weight.shape
    return linear


class SlicedLinear(nn.Module):
    """A Linear restricted to some rows / columns that computes with the super-network's own weights.

    The full Linear is held outside the module tree, so its parameters stay owned (and optimised) by
    the super-network and receive the gradients of the smaller computation.
    """

    def __init__(self, full: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None):
        super().__init__()
        self._full = (full,)
        self.rows, self.cols = rows, cols

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight, bias = _slice_weights(self._full[0], self.rows, self.cols)
        return F.linear(inputs, weight, bias)


class BertFamilyAdapter(ModelAdapter):
    model_types = ("bert", "roberta")

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def head_bias(self, model: PreTrainedModel) -> nn.Parameter | None:
        head = model.classifier  # BERT: a Linear; RoBERTa: dense -> out_proj
        return getattr(head, "out_proj", head).bias

    def shape(self, model: PreTrainedModel) -> ModelShape:
        config = model.config
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            head_dim=config.hidden_size // config.num_attention_heads,
            hidden_size=config.hidden_size,
            ffn_size=config.intermediate_size,
        )

    @contextmanager
    def _only_layers(self, model: PreTrainedModel, kept: tuple[int, ...]) -> Iterator[nn.ModuleList]:
        encoder = model.base_model.encoder
        all_layers = encoder.layer
        encoder.layer = nn.ModuleList([all_layers[i] for i in kept])
        try:
            yield encoder.layer
        finally:
            encoder.layer = all_layers

    @contextmanager
    def masked(self, model: PreTrainedModel, subnet: SubNetwork) -> Iterator[PreTrainedModel]:
        shape = self.shape(model)
        head_mask, unit_mask = subnet.head_mask(shape), subnet.unit_mask(shape)
        handles = []
        try:
            for i in subnet.layers:
                layer = self.layers(model)[i]
                if len(subnet.heads[i]) < shape.num_heads:
                    hook = partial(_mask_head_outputs, mask=head_mask[i].to(layer.attention.output.dense.weight.device), head_dim=shape.head_dim)
                    handles.append(layer.attention.output.dense.register_forward_pre_hook(hook))
                if len(subnet.units[i]) < shape.ffn_size:
                    hook = partial(_mask_units, mask=unit_mask[i].to(layer.output.dense.weight.device))
                    handles.append(layer.output.dense.register_forward_pre_hook(hook))
            with self._only_layers(model, subnet.layers):
                yield model
        finally:
            for handle in handles:
                handle.remove()

    def extract(self, model: PreTrainedModel, subnet: SubNetwork) -> PreTrainedModel:
        shape = self.shape(model)
        subnet.validate(shape)
        # Copy everything but the layer list, then only the kept layers: no mutation of `model`,
        # so threads may extract from one shared super-network concurrently.
        all_layers = self.layers(model)
        small = copy.deepcopy(model, memo={id(all_layers): nn.ModuleList()})
        self.layers(small).extend(copy.deepcopy(all_layers[i]) for i in subnet.layers)
        for new_index, (layer, heads, units) in enumerate(zip(self.layers(small), subnet.kept_heads(), subnet.kept_units())):
            self._slice_layer(layer, heads, units, shape.head_dim, _sliced_copy)
            if hasattr(layer.attention.self, "layer_idx"):
                layer.attention.self.layer_idx = new_index
        small.config = self._pruned_config(model, subnet)
        return small

    @staticmethod
    def _slice_layer(layer: nn.Module, heads: tuple[int, ...], units: tuple[int, ...], head_dim: int,
                     slice_linear: Callable[[nn.Linear, torch.Tensor | None, torch.Tensor | None], nn.Module],
                     replace: Callable[[nn.Module, str, nn.Module], None] = setattr) -> None:
        """Restrict one layer to `heads` and `units`; `slice_linear` decides copy (export) or view (training)."""
        attention = layer.attention
        rows = torch.tensor([h * head_dim + j for h in heads for j in range(head_dim)], dtype=torch.long)
        if heads:
            for name in ("query", "key", "value"):
                replace(attention.self, name, slice_linear(getattr(attention.self, name), rows, None))
        else:
            replace(attention, "self", EmptySelfAttention())
        replace(attention.output, "dense", slice_linear(attention.output.dense, None, rows))
        unit_index = torch.tensor(units, dtype=torch.long)
        replace(layer.intermediate, "dense", slice_linear(layer.intermediate.dense, unit_index, None))
        replace(layer.output, "dense", slice_linear(layer.output.dense, None, unit_index))

    @contextmanager
    def sliced(self, model: PreTrainedModel, subnet: SubNetwork) -> Iterator[PreTrainedModel]:
        shape = self.shape(model)
        swapped: list[tuple[nn.Module, str, nn.Module]] = []

        def replace(parent: nn.Module, name: str, module: nn.Module) -> None:
            swapped.append((parent, name, getattr(parent, name)))
            setattr(parent, name, module)

        try:
            for i in subnet.layers:
                if len(subnet.heads[i]) < shape.num_heads or len(subnet.units[i]) < shape.ffn_size:
                    self._slice_layer(self.layers(model)[i], subnet.heads[i], subnet.units[i], shape.head_dim, SlicedLinear, replace)
            with self._only_layers(model, subnet.layers):
                yield model
        finally:
            for parent, name, original in reversed(swapped):
                setattr(parent, name, original)

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

    def layer_parameter_count(self, shape: ModelShape, num_heads: int, num_units: int) -> int:
        hidden, width = shape.hidden_size, num_heads * shape.head_dim
        attention = 3 * (hidden * width + width) + (width * hidden + hidden) + 2 * hidden
        feed_forward = (hidden * num_units + num_units) + (num_units * hidden + hidden) + 2 * hidden
        return attention + feed_forward

    def layer_flops(self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int) -> int:
        hidden, width = shape.hidden_size, num_heads * shape.head_dim
        projections = 2 * seq_len * hidden * width * 4  # query, key, value, output
        attention = 2 * 2 * seq_len * seq_len * width  # scores and weighted sum
        feed_forward = 2 * 2 * seq_len * hidden * num_units
        return projections + attention + feed_forward


def fits_stock_config(shape: ModelShape, heads: list[int], units: list[int]) -> bool:
    """Stock BERT configs describe dropped layers and a uniform FFN width, but not fewer heads."""
    return all(h == shape.num_heads for h in heads) and len(set(units)) <= 1
