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
    num_heads: int  # query heads per layer
    head_dim: int
    hidden_size: int
    ffn_size: int
    num_kv_heads: int | None = None  # key/value heads (grouped-query attention); None: one per query head
    # Family details that change parameter counts but not the search space, e.g. {"qkv_bias", "qk_norm"}.
    features: frozenset[str] = frozenset()

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def group_size(self) -> int:
        """Query heads that share one key/value head (1 without grouped-query attention)."""
        return max(1, self.num_heads // max(1, self.kv_heads))


@dataclass(frozen=True)
class SubNetwork:
    layers: tuple[int, ...]  # kept layers of the super-network, ascending
    heads: tuple[tuple[int, ...], ...]  # per super-network layer: kept head indices, ascending
    units: tuple[tuple[int, ...], ...]  # per super-network layer: kept FFN neuron indices, ascending

    @classmethod
    def full(cls, shape: ModelShape) -> SubNetwork:
        return cls.first_k(
            shape, shape.num_layers, [shape.num_heads] * shape.num_layers, [shape.ffn_size] * shape.num_layers
        )

    @classmethod
    def first_k(cls, shape: ModelShape, num_layers: int, heads: list[int], units: list[int]) -> SubNetwork:
        """The reference code's convention: keep the first n layers, the first h heads and first u units."""
        return cls.from_layers(
            tuple(range(num_layers)),
            [tuple(range(h)) for h in heads],
            [tuple(range(u)) for u in units],
        )

    @classmethod
    def from_layers(cls, layers, heads, units) -> SubNetwork:
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

    def kept_kv_heads(self, shape: ModelShape) -> list[tuple[int, ...]]:
        """Key/value heads each kept layer needs: those of the groups its query heads belong to."""
        return [tuple(sorted({h // shape.group_size for h in heads})) for heads in self.kept_heads()]

    def gqa_problem(self, shape: ModelShape) -> str | None:
        """Why this sub-network is not a valid grouped-query attention model, or None when it is.

        A kept key/value head keeps its group; every kept group of a layer must keep the same number of
        query heads, or the pruned layer has no `num_key_value_groups`.
        """
        for layer, heads in zip(self.layers, self.kept_heads()):
            per_group = {}
            for h in heads:
                per_group[h // shape.group_size] = per_group.get(h // shape.group_size, 0) + 1
            if len(set(per_group.values())) > 1:
                counts = ", ".join(f"group {g}: {n}" for g, n in sorted(per_group.items()))
                return (
                    f"layer {layer} keeps unequal numbers of query heads per key/value group ({counts}); "
                    f"grouped-query attention needs the same number (at most {shape.group_size}) in every kept group"
                )
        return None

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
        return {
            "layers": list(self.layers),
            "heads": [list(h) for h in self.heads],
            "units": [list(u) for u in self.units],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubNetwork:
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
