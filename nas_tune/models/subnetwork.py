"""A sub-network as plain data: which layers, heads and FFN neurons of the super-network are kept.

Indices rather than 0/1 masks, because slicing weights needs indices and masks are derived cheaply.
Heads and units of dropped layers are ignored everywhere (a dropped layer removes the whole block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ModelShape:
    """The prunable structure of a transformer: what every search space and metric is sized by."""

    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    ffn_size: int


@dataclass(frozen=True)
class SubNetwork:
    layers: tuple[int, ...]  # kept layers of the super-network, ascending
    heads: tuple[tuple[int, ...], ...]  # per super-network layer: kept head indices, ascending
    units: tuple[tuple[int, ...], ...]  # per super-network layer: kept FFN neuron indices, ascending

    @classmethod
    def full(cls, shape: ModelShape) -> "SubNetwork":
        return cls.first_k(shape, shape.num_layers, [shape.num_heads] * shape.num_layers, [shape.ffn_size] * shape.num_layers)

    @classmethod
    def first_k(cls, shape: ModelShape, num_layers: int, heads: list[int], units: list[int]) -> "SubNetwork":
        """The reference code's convention: keep the first n layers, the first h heads and first u units."""
        return cls.from_layers(
            tuple(range(num_layers)),
            [tuple(range(h)) for h in heads],
            [tuple(range(u)) for u in units],
        )

    @classmethod
    def from_layers(cls, layers, heads, units) -> "SubNetwork":
        return cls(
            layers=tuple(sorted(int(i) for i in layers)),
            heads=tuple(tuple(sorted(int(h) for h in layer)) for layer in heads),
            units=tuple(tuple(sorted(int(u) for u in layer)) for layer in units),
        )

    def kept_heads(self) -> list[tuple[int, ...]]:
        """Head indices of each kept layer, in order."""
        return [self.heads[i] for i in self.layers]

    def kept_units(self) -> list[tuple[int, ...]]:
        return [self.units[i] for i in self.layers]

    def head_mask(self, shape: ModelShape) -> torch.Tensor:
        """[layers, heads] 0/1 float mask; rows of dropped layers are zero."""
        mask = torch.zeros(shape.num_layers, shape.num_heads)
        for i in self.layers:
            mask[i, list(self.heads[i])] = 1.0
        return mask

    def unit_mask(self, shape: ModelShape) -> torch.Tensor:
        mask = torch.zeros(shape.num_layers, shape.ffn_size)
        for i in self.layers:
            mask[i, list(self.units[i])] = 1.0
        return mask

    def is_full(self, shape: ModelShape) -> bool:
        return self == SubNetwork.full(shape)

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "heads": [list(h) for h in self.heads], "units": [list(u) for u in self.units]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SubNetwork":
        return cls.from_layers(data["layers"], data["heads"], data["units"])

    def validate(self, shape: ModelShape) -> None:
        """Raise ValueError when the indices do not fit the model (a programming error, not user input)."""
        if len(self.heads) != shape.num_layers or len(self.units) != shape.num_layers:
            raise ValueError(f"sub-network describes {len(self.heads)} layers, the model has {shape.num_layers}")
        if any(not 0 <= i < shape.num_layers for i in self.layers):
            raise ValueError(f"layer index out of range in {self.layers}")
        for heads, units in zip(self.heads, self.units):
            if any(not 0 <= h < shape.num_heads for h in heads) or any(not 0 <= u < shape.ffn_size for u in units):
                raise ValueError("head or unit index out of range")
