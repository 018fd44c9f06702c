"""Mask tuning (Kwon et al. 2022): refit a sub-network's kept heads and neurons so its layers reproduce the full model's.

Layer by layer, one real-valued scale per kept head / neuron, fitted by linear least squares so that each block's
total (projection output + residual, `ModelAdapter.residual_blocks`: the LayerNorm input of a post-LN encoder, the
residual stream of a pre-norm decoder) matches the unpruned model's on the same examples. The pruned model's own
hidden states are the inputs, so earlier fits are taken into account. The scales are folded into the projections,
so the result is a plain model. rfp tunes its masks with it; `--repair` the sub-networks a search picked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from nas_tune.data import TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.models import ModelAdapter, SubNetwork
from nas_tune.models.adapter import ResidualBlock, Tap
from nas_tune.models.slicing import scale_inputs, slice_weights

Call = tuple[tuple, dict]  # a layer's arguments after its hidden states: (positional, keyword)


@dataclass
class BlockFit:
    layer: int
    block: str  # "attention" or "ffn"
    kept: int  # heads or neurons whose scales were fitted
    before: float  # mean squared error of the block's total (projection + residual) with all scales 1
    after: float  # the same with the fitted scales: never larger


@dataclass
class MaskTuning:
    model: PreTrainedModel  # full-size copy with the fitted scales folded in; cut it with adapter.extract
    fits: list[BlockFit]

    def summary(self) -> dict[str, float]:
        return {
            "reconstruction_before": sum(f.before for f in self.fits) / max(1, len(self.fits)),
            "reconstruction_after": sum(f.after for f in self.fits) / max(1, len(self.fits)),
        }


def check_reconstructable(model: PreTrainedModel, adapter: ModelAdapter, method: str, alternative: str) -> None:
    """Refuse a family whose adapter does not describe its layers as projection + residual blocks."""
    if not adapter.residual_blocks(adapter.layers(model)[0]):
        raise UserError(
            f"{method} refits each layer's attention and FFN outputs, which the adapter of '{model.config.model_type}' "
            f"models does not describe; {alternative}."
        )


class _Stop(Exception):
    """Raised by a capture hook once it has what it needs: the rest of the forward pass is skipped."""


def _output(value):
    return value[0] if isinstance(value, tuple) else value


@contextmanager
def _tapped(taps: dict[str, Tap], seen: dict[str, torch.Tensor]) -> Iterator[None]:
    """Record the tensor of every tap in `seen` (by name) while the context lasts."""
    handles = []
    try:
        for name, tap in taps.items():
            if tap.argument is None:
                handles.append(
                    tap.module.register_forward_hook(
                        lambda module, args, out, name=name: seen.__setitem__(name, _output(out))
                    )
                )
            else:
                handles.append(
                    tap.module.register_forward_pre_hook(
                        lambda module, args, name=name, index=tap.argument: seen.__setitem__(name, args[index])
                    )
                )
        yield
    finally:
        for handle in handles:
            handle.remove()


def _layer_calls(
    model: PreTrainedModel, layers: nn.ModuleList, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, list[Call]]:
    """The first layer's hidden states and every layer's other arguments (attention masks, positions), from one
    forward pass that stops before the last layer. No KV cache: the layers are then run again on their own."""
    calls: list[tuple[tuple, dict]] = []

    def record(module, args, kwargs):
        calls.append((args, kwargs))
        if len(calls) == len(layers):
            raise _Stop

    handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in layers]
    try:
        model(**batch, use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if len(calls) != len(layers):
        raise RuntimeError(f"{len(calls)} of {len(layers)} layers were called")
    return calls[0][0][0], [(args[1:], kwargs) for args, kwargs in calls]


def _block_inputs(
    layer: nn.Module, block: ResidualBlock, state: torch.Tensor, call: Call
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `layer` up to `block`'s projection; return the projection's input and the block's residual."""
    seen: dict[str, torch.Tensor] = {}

    def stop(module, args):
        seen["input"] = args[0]
        raise _Stop

    handle = block.projection.register_forward_pre_hook(stop)
    try:
        with _tapped({"residual": block.residual}, seen):
            layer(state, *call[0], **call[1])
    except _Stop:
        pass
    finally:
        handle.remove()
    if len(seen) != 2:
        raise RuntimeError(f"the {block.kind} block's residual is not seen before its projection")
    return seen["input"], seen["residual"]


def _run_with_totals(
    layer: nn.Module,
    blocks: tuple[ResidualBlock, ...],
    states: list[torch.Tensor],
    calls: list[Call],
    tokens: list[torch.Tensor],
) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
    """The unpruned layer's outputs, per batch, and its blocks' totals on real tokens, per block and batch."""
    outputs, totals = [], {block.kind: [] for block in blocks}
    seen: dict[str, torch.Tensor] = {}
    with _tapped({block.kind: block.total for block in blocks}, seen):
        for state, (args, kwargs), mask in zip(states, calls, tokens):
            outputs.append(_output(layer(state, *args, **kwargs)))
            for kind in totals:
                totals[kind].append(seen[kind][mask])
    return outputs, totals


class _LeastSquares:
    """Normal equations of min_s ||W (x * s) + b + residual - target||^2 over groups of input columns
    (a head's head_dim columns, or one neuron), accumulated over tokens in float64 on the CPU."""

    def __init__(self, linear: nn.Module, groups: tuple[int, ...], group_size: int):
        self.linear, self.group_size, self.groups = linear, group_size, len(groups)
        self.columns = torch.tensor([g * group_size + j for g in groups for j in range(group_size)], dtype=torch.long)
        weight, bias = slice_weights(linear, None, self.columns.to(linear.weight.device))
        self.weight = weight.detach().cpu().double()
        self.bias = bias.detach().cpu().double() if bias is not None else 0.0
        width = len(self.columns)
        self.xtx = torch.zeros(width, width, dtype=torch.float64)
        self.xr = torch.zeros(width, dtype=torch.float64)
        self.rr = 0.0
        self.count = 0

    def add(self, x: torch.Tensor, residual: torch.Tensor, target: torch.Tensor) -> None:
        x = x[:, self.columns.to(x.device)].cpu().double()
        remainder = target.cpu().double() - self.bias - residual.cpu().double()
        self.xtx += x.T @ x
        self.xr += (x * (remainder @ self.weight)).sum(0)
        self.rr += float(remainder.pow(2).sum())
        self.count += remainder.numel()

    def solve_and_fold(self) -> tuple[float, float]:
        """Fit the scales, fold them into the projection's input columns, return the error before and after."""
        k, size = self.groups, self.group_size
        gram = (self.xtx * (self.weight.T @ self.weight)).reshape(k, size, k, size).sum((1, 3))
        linear_term = self.xr.reshape(k, size).sum(1)

        def error(scales: torch.Tensor) -> float:
            return float(scales @ gram @ scales - 2 * linear_term @ scales + self.rr) / self.count

        ones = torch.ones(k, dtype=torch.float64)
        scales = torch.linalg.lstsq(gram, linear_term.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        before, after = error(ones), error(scales)
        if not after < before:  # nothing to gain (or numerical noise): keep the weights
            return before, before
        scale_inputs(self.linear, self.columns, scales.repeat_interleave(size))
        return before, after


def tune_masks(
    teacher: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork, data: TokenizedSplit, *, batch_size: int = 32
) -> MaskTuning:
    """A copy of `teacher` whose sub-network `subnet` reproduces the teacher's block outputs as closely as
    per-head / per-neuron output scales allow (least squares, one layer block at a time)."""
    check_reconstructable(teacher, adapter, "mask tuning", "use a supported family")
    shape = adapter.shape(teacher)
    student = copy.deepcopy(teacher).eval()
    teacher.eval()
    device = next(teacher.parameters()).device
    batches = [{k: v.to(device) for k, v in b.items() if k != "labels"} for b in data.batches(batch_size)]
    tokens = [b["attention_mask"].bool() for b in batches]  # padding is no part of the fit
    teacher_layers, student_layers = adapter.layers(teacher), adapter.layers(student)
    fits: list[BlockFit] = []
    with torch.no_grad():
        # What the model passes to each layer besides its hidden states, per batch; identical for the student,
        # whose embeddings are a copy. Layers are then run one at a time on stored hidden states.
        firsts, calls = zip(*(_layer_calls(teacher, teacher_layers, batch) for batch in batches))
        teacher_states, student_states = list(firsts), list(firsts)
        with adapter.masked(student, subnet):
            for index in range(shape.num_layers):
                layer_calls = [per_layer[index] for per_layer in calls]
                teacher_layer = teacher_layers[index]
                teacher_states, targets = _run_with_totals(
                    teacher_layer, adapter.residual_blocks(teacher_layer), teacher_states, layer_calls, tokens
                )
                if index not in subnet.layers:
                    continue
                layer = student_layers[index]
                for block in adapter.residual_blocks(layer):
                    groups, size = (
                        (subnet.heads[index], shape.head_dim) if block.kind == "attention" else (subnet.units[index], 1)
                    )
                    if not groups:
                        continue
                    problem = _LeastSquares(block.projection, groups, size)
                    for state, call, mask, target in zip(student_states, layer_calls, tokens, targets[block.kind]):
                        x, residual = _block_inputs(layer, block, state, call)
                        problem.add(x[mask], residual[mask], target)
                    before, after = problem.solve_and_fold()
                    fits.append(BlockFit(index, block.kind, len(groups), before, after))
                student_states = [
                    _output(layer(state, *args, **kwargs)) for state, (args, kwargs) in zip(student_states, layer_calls)
                ]
    return MaskTuning(student, fits)
