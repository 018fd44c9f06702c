"""Family-independent pieces of masking and slicing: head/neuron masks as hooks, Linear layers cut to indices.

Adapters describe *where* heads and neurons live in their modules; these helpers do the tensor work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mask_head_outputs(module, args, *, mask: torch.Tensor, head_dim: int):
    """Forward pre-hook for the attention output projection: zero the inputs of masked heads."""
    (context,) = args[:1]
    shaped = context.unflatten(-1, (-1, head_dim)) * mask.to(context.dtype).unsqueeze(-1)
    return (shaped.flatten(-2), *args[1:])


def mask_units(module, args, *, mask: torch.Tensor):
    """Forward pre-hook for the FFN output projection: zero the inputs of masked neurons."""
    return (args[0] * mask.to(args[0].dtype), *args[1:])


def head_rows(heads: tuple[int, ...], head_dim: int) -> torch.Tensor:
    """Indices of the weight rows (or columns) that belong to `heads`, heads stored one after another."""
    return torch.tensor([h * head_dim + j for h in heads for j in range(head_dim)], dtype=torch.long)


def slice_weights(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias of `linear` restricted to output `rows` / input `cols` (differentiable)."""
    weight, bias = linear.weight, linear.bias
    if rows is not None:
        weight = weight.index_select(0, rows)
        bias = bias.index_select(0, rows) if bias is not None else None
    if cols is not None:
        weight = weight.index_select(1, cols)
    return weight, bias


def sliced_copy(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    """Slice a Linear in place into an independent smaller one (for extraction)."""
    with torch.no_grad():
        weight, bias = slice_weights(linear, rows, cols)
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
        weight, bias = slice_weights(self._full[0], self.rows, self.cols)
        return F.linear(inputs, weight, bias)
