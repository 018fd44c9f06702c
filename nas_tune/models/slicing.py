"""Family-independent pieces of masking and slicing: head/neuron masks as hooks, Linear layers cut to indices.

Adapters describe *where* heads and neurons live in their modules; these helpers do the tensor work.
"Linear" here also means transformers' `Conv1D` (GPT-2), which stores its weight transposed ([in, out]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D


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


def slice_weights(
    linear: nn.Linear | Conv1D, rows: torch.Tensor | None, cols: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight ([out, in], as nn.Linear stores it) and bias of `linear` restricted to output `rows` / input `cols` (differentiable)."""
    weight, bias = (linear.weight.t() if isinstance(linear, Conv1D) else linear.weight), linear.bias
    if rows is not None:
        weight = weight.index_select(0, rows)
        bias = bias.index_select(0, rows) if bias is not None else None
    if cols is not None:
        weight = weight.index_select(1, cols)
    return weight, bias


def sliced_copy(linear: nn.Linear | Conv1D, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear | Conv1D:
    """Slice a Linear (or Conv1D) in place into an independent smaller one of the same class (for extraction).

    A Conv1D left without inputs becomes an nn.Linear: Conv1D cannot compute on zero input features.
    """
    with torch.no_grad():
        weight, bias = slice_weights(linear, rows, cols)
    if isinstance(linear, Conv1D) and weight.shape[1] == 0:
        linear = nn.Linear(
            1, weight.shape[0], bias=bias is not None
        )  # placeholder: weight, bias and sizes are set below
    if bias is not None:
        linear.bias = nn.Parameter(bias.clone())
    if isinstance(linear, Conv1D):
        linear.weight = nn.Parameter(weight.t().contiguous().clone())
        linear.nf, linear.nx = weight.shape
        return linear
    linear.weight = nn.Parameter(weight.contiguous().clone())
    linear.out_features, linear.in_features = weight.shape
    return linear


class SlicedLinear(nn.Module):
    """A Linear restricted to some rows / columns that computes with the super-network's own weights.

    The full Linear is held outside the module tree, so its parameters stay owned (and optimised) by
    the super-network and receive the gradients of the smaller computation.
    """

    def __init__(self, full: nn.Linear | Conv1D, rows: torch.Tensor | None, cols: torch.Tensor | None):
        super().__init__()
        self._full = (full,)
        self.rows, self.cols = rows, cols

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight, bias = slice_weights(self._full[0], self.rows, self.cols)
        return F.linear(inputs, weight, bias)


def scale_inputs(linear: nn.Linear | Conv1D, columns: torch.Tensor, scales: torch.Tensor) -> None:
    """Multiply the weights of `linear` that read input `columns` by `scales` (one per column), in place."""
    with torch.no_grad():
        weight = linear.weight
        columns, scales = columns.to(weight.device), scales.to(weight.device, weight.dtype)
        if isinstance(linear, Conv1D):  # [in, out]
            weight[columns] *= scales.unsqueeze(1)
        else:
            weight[:, columns] *= scales
