"""Masking, slicing and extraction for transformers whose prunable blocks sit in one list of layers.

Every family nas-tune supports keeps its layers in a `ModuleList` and has one projection that reads all
attention heads and one that reads all FFN neurons; a family adapter names those modules and says how one
layer is cut, and this class does the rest the same way for all of them.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from nas_tune.errors import UserError
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.slicing import SlicedLinear, mask_head_outputs, mask_units, sliced_copy
from nas_tune.models.subnetwork import ModelShape, SubNetwork

SliceLinear = Callable[[nn.Linear, torch.Tensor | None, torch.Tensor | None], nn.Module]
Replace = Callable[[nn.Module, str, nn.Module], None]


def transformer_layer_flops(
    seq_len: int, hidden: int, query_width: int, kv_width: int, units: int, ffn_matrices: int
) -> int:
    """FLOPs (2 per multiply-add) of one attention + FFN layer for one sequence, any family.

    `query_width` / `kv_width`: heads x head size of the queries (and output) and of the keys and values;
    `ffn_matrices`: 2 for up/down FFNs, 3 for gated ones (gate, up, down).
    """
    projections = 2 * seq_len * hidden * (2 * query_width + 2 * kv_width)  # q and output, k and v
    attention = 2 * 2 * seq_len * seq_len * query_width  # scores and weighted sum, per query head
    feed_forward = 2 * ffn_matrices * seq_len * hidden * units
    return projections + attention + feed_forward


class LayeredAdapter(ModelAdapter):
    @abstractmethod
    def _config_shape(self, model: PreTrainedModel) -> ModelShape:
        """The shape the family's config fields describe (for a model `extract` cut, its stock fields only)."""

    def shape(self, model: PreTrainedModel) -> ModelShape:
        """Also the real shape of a model `extract` cut to the same heads, key/value heads and neurons in every
        layer that its stock config cannot describe (read from `nas_tune_layer_*`), so it trains like any other."""
        shape, config = self._config_shape(model), model.config
        heads = getattr(config, "nas_tune_layer_heads", None)
        if heads is None:
            return shape
        units, kv_heads = config.nas_tune_layer_units, getattr(config, "nas_tune_layer_kv_heads", None)
        if len({*zip(heads, units, kv_heads or heads)}) != 1:
            raise UserError(
                f"this {config.model_type} model was cut by nas-tune to different sizes per layer (or to no layer), so it is "
                "no super-network to prune again; pass the model it was cut from."
            )
        return replace(
            shape,
            num_layers=len(heads),
            num_heads=heads[0],
            head_dim=config.nas_tune_head_dim,
            ffn_size=units[0],
            num_kv_heads=kv_heads[0] if kv_heads else shape.num_kv_heads,
        )

    @abstractmethod
    def _set_layers(self, model: PreTrainedModel, layers: nn.ModuleList) -> None: ...

    @abstractmethod
    def _output_projections(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
        """The Linear that reads the concatenated heads, and the one that reads the FFN neurons."""

    @abstractmethod
    def slice_layer(
        self,
        layer: nn.Module,
        heads: tuple[int, ...],
        units: tuple[int, ...],
        shape: ModelShape,
        slice_linear: SliceLinear,
        replace: Replace = setattr,
    ) -> None:
        """Restrict one layer to `heads` and `units`; `slice_linear` decides copy (export) or view (training)."""

    @abstractmethod
    def _pruned_config(self, model: PreTrainedModel, subnet: SubNetwork) -> PreTrainedConfig: ...

    def _attention(self, layer: nn.Module) -> nn.Module | None:
        """The module holding `layer_idx` (the KV-cache slot), if the family has one."""
        return None

    def check(self, shape: ModelShape, subnet: SubNetwork) -> None:
        """Raise when `subnet` cannot be built for this model."""
        subnet.validate(shape)

    @contextmanager
    def _only_layers(self, model: PreTrainedModel, kept: tuple[int, ...]) -> Iterator[nn.ModuleList]:
        """Run only the `kept` layers, their attentions numbered 0.. so that a KV cache fills its slots in order."""
        all_layers = self.layers(model)
        attentions = self._cache_users([all_layers[i] for i in kept])
        numbers = [a.layer_idx for a in attentions]
        self._set_layers(model, nn.ModuleList([all_layers[i] for i in kept]))
        try:
            for slot, attention in enumerate(attentions):
                attention.layer_idx = slot
            yield self.layers(model)
        finally:
            for attention, number in zip(attentions, numbers):
                attention.layer_idx = number
            self._set_layers(model, all_layers)

    def _cache_users(self, layers: list[nn.Module]) -> list[nn.Module]:
        """The attentions of `layers` that own a KV-cache slot (`layer_idx`); a layer without heads owns none."""
        attentions = (self._attention(layer) for layer in layers)
        return [a for a in attentions if getattr(a, "layer_idx", None) is not None]

    @contextmanager
    def scaled(
        self,
        model: PreTrainedModel,
        head_scales: Sequence[torch.Tensor | None],
        unit_scales: Sequence[torch.Tensor | None],
    ) -> Iterator[PreTrainedModel]:
        head_dim = self.shape(model).head_dim
        handles = []
        try:
            for layer, head_scale, unit_scale in zip(self.layers(model), head_scales, unit_scales):
                head_reader, unit_reader = self._output_projections(layer)
                if head_scale is not None:
                    hook = partial(mask_head_outputs, mask=head_scale.to(head_reader.weight.device), head_dim=head_dim)
                    handles.append(head_reader.register_forward_pre_hook(hook))
                if unit_scale is not None:
                    handles.append(
                        unit_reader.register_forward_pre_hook(
                            partial(mask_units, mask=unit_scale.to(unit_reader.weight.device))
                        )
                    )
            yield model
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def layer_states(self, model: PreTrainedModel) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Every family's layer takes the hidden states as its first argument and returns them (transformers 5)."""
        states: list[tuple[torch.Tensor, torch.Tensor]] = []

        def record(module, args, kwargs, output):
            inputs = args[0] if args else kwargs["hidden_states"]
            states.append((inputs, output[0] if isinstance(output, tuple) else output))

        handles = [layer.register_forward_hook(record, with_kwargs=True) for layer in self.layers(model)]
        try:
            yield states
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def masked(self, model: PreTrainedModel, subnet: SubNetwork) -> Iterator[PreTrainedModel]:
        shape = self.shape(model)
        self.check(shape, subnet)
        head_mask, unit_mask = subnet.head_mask(shape), subnet.unit_mask(shape)
        kept = set(subnet.layers)
        head_scales = [
            head_mask[i] if i in kept and len(subnet.heads[i]) < shape.num_heads else None
            for i in range(shape.num_layers)
        ]
        unit_scales = [
            unit_mask[i] if i in kept and len(subnet.units[i]) < shape.ffn_size else None
            for i in range(shape.num_layers)
        ]
        with self.scaled(model, head_scales, unit_scales), self._only_layers(model, subnet.layers):
            yield model

    @contextmanager
    def sliced(self, model: PreTrainedModel, subnet: SubNetwork) -> Iterator[PreTrainedModel]:
        shape = self.shape(model)
        self.check(shape, subnet)
        swapped: list[tuple[nn.Module, str, object]] = []

        def replace(parent: nn.Module, name: str, value: object) -> None:
            swapped.append((parent, name, getattr(parent, name)))
            setattr(parent, name, value)

        try:
            for i in subnet.layers:
                if len(subnet.heads[i]) < shape.num_heads or len(subnet.units[i]) < shape.ffn_size:
                    self.slice_layer(
                        self.layers(model)[i], subnet.heads[i], subnet.units[i], shape, SlicedLinear, replace
                    )
            with self._only_layers(model, subnet.layers):
                yield model
        finally:
            for parent, name, original in reversed(swapped):
                setattr(parent, name, original)

    def permute_layer(self, model: PreTrainedModel, index: int, heads: tuple[int, ...], units: tuple[int, ...]) -> None:
        shape = self.shape(model)
        problem = permutation_problem(shape, heads, units)
        if problem:
            raise ValueError(f"not a reordering of layer {index}: {problem}")
        # slicing to *all* heads and units, in the new order, is a permutation
        self.slice_layer(self.layers(model)[index], tuple(heads), tuple(units), shape, sliced_copy)

    def extract(self, model: PreTrainedModel, subnet: SubNetwork) -> PreTrainedModel:
        shape = self.shape(model)
        self.check(shape, subnet)
        # Copy everything but the layer list, then only the kept layers: no mutation of `model`,
        # so threads may extract from one shared super-network concurrently.
        all_layers = self.layers(model)
        small = copy.deepcopy(model, memo={id(all_layers): nn.ModuleList()})
        self.layers(small).extend(copy.deepcopy(all_layers[i]) for i in subnet.layers)
        for layer, heads, units in zip(self.layers(small), subnet.kept_heads(), subnet.kept_units()):
            self.slice_layer(layer, heads, units, shape, sliced_copy)
        for slot, attention in enumerate(self._cache_users(list(self.layers(small)))):
            attention.layer_idx = slot
        small.config = self._pruned_config(model, subnet)
        return small


def permutation_problem(shape: ModelShape, heads: tuple[int, ...], units: tuple[int, ...]) -> str | None:
    """Why `heads` / `units` do not reorder one layer of `shape` (GQA: by whole key/value groups), or None."""
    if sorted(heads) != list(range(shape.num_heads)) or sorted(units) != list(range(shape.ffn_size)):
        return f"the heads must be a permutation of 0..{shape.num_heads - 1} and the units of 0..{shape.ffn_size - 1}"
    size = shape.group_size
    if any(len({h // size for h in heads[start : start + size]}) > 1 for start in range(0, len(heads), size)):
        return f"the query heads at the positions of each key/value group must come from one group of {size}"
    return None
