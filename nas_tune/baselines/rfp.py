"""Retraining-free pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers").

Per budget, on a fine-tuned model and a few thousand training examples:
1. Fisher: the diagonal empirical Fisher information of head/neuron masks, sum_i (dL_i/dm)^2, from the
   per-example gradients of `importance.mask_gradients` (computed once for all budgets).
2. Mask search: the mask keeping the most Fisher information within the parameter budget
   (`importance.search_mask`, exact for the diagonal approximation).
3. Mask rearrangement: each layer keeps as many heads / neurons as the search gave it, but which ones is
   chosen greedily to minimise the layer's block-diagonal Fisher estimate of the loss change,
   ||sum over pruned j of g_j||^2 with g_j the per-example gradient vector of unit j.
4. Mask tuning: layer by layer, one real-valued scale per kept head / neuron, fitted by linear least squares
   so the pruned layer's output (the input of each LayerNorm: projection + residual) matches the unpruned
   model's on the same examples; the pruned model's own hidden states are the inputs, so earlier fits are
   taken into account. The scales are folded into the output projections, so the result is a plain model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from nas_tune.baselines.base import Candidate
from nas_tune.baselines.importance import Importance, MaskGradients, Scores, mask_gradients, search_mask
from nas_tune.data import TokenizedSplit
from nas_tune.models import ModelAdapter, SubNetwork
from nas_tune.search_space import Config


def fisher_scores(grads: MaskGradients) -> Scores:
    return Scores(grads.heads.pow(2).sum(0), grads.units.pow(2).sum(0))


@dataclass
class FisherBlocks:
    """Per layer, the Gram matrices G = g g^T of per-example mask gradients: the block-diagonal Fisher."""

    heads: list[torch.Tensor]  # [heads, heads] per layer
    units: list[torch.Tensor]  # [ffn, ffn] per layer

    @classmethod
    def from_gradients(cls, grads: MaskGradients) -> FisherBlocks:
        def gram(g: torch.Tensor) -> torch.Tensor:
            g = g.double()
            return g.T @ g

        return cls([gram(grads.heads[:, i]) for i in range(grads.heads.shape[1])],
                   [gram(grads.units[:, i]) for i in range(grads.units.shape[1])])


def pruned_fisher_loss(gram: torch.Tensor, kept: list[int] | tuple[int, ...]) -> float:
    """(1 - m)^T F (1 - m): the block-Fisher estimate of the loss change from pruning all but `kept`."""
    pruned = sorted(set(range(len(gram))) - set(kept))
    return float(gram[pruned][:, pruned].sum())


def greedy_rearrange(gram: torch.Tensor, keep: int) -> list[int]:
    """Kwon et al.'s greedy rearrangement: start by pruning the units of smallest diagonal Fisher, then, for each
    other unit in that order, add it to the pruned set and take out the one whose removal leaves the smallest
    ||sum of pruned gradients||^2. Never worse than the diagonal choice. Incremental: O(units) per step."""
    n = len(gram)
    if keep <= 0 or keep >= n:
        return list(range(max(0, min(keep, n))))
    diagonal = gram.diagonal()
    order = torch.argsort(diagonal, stable=True).tolist()
    pruned = order[: n - keep]
    dots = gram[:, pruned].sum(1)  # g_j . S for every j, S = sum of pruned gradients
    total = float(dots[pruned].sum())  # ||S||^2
    for index in order[n - keep:]:
        total += 2 * float(dots[index]) + float(diagonal[index])
        dots += gram[:, index]
        pruned.append(index)
        candidates = torch.tensor(pruned)
        lengths = total - 2 * dots[candidates] + diagonal[candidates]  # ||S - g_j||^2
        position = int(lengths.argmin())
        removed = pruned.pop(position)
        total = float(lengths[position])
        dots -= gram[:, removed]
    return sorted(set(range(n)) - set(pruned))


def rearrange(subnet: SubNetwork, blocks: FisherBlocks) -> SubNetwork:
    heads = [greedy_rearrange(gram, len(kept)) for gram, kept in zip(blocks.heads, subnet.heads)]
    units = [greedy_rearrange(gram, len(kept)) for gram, kept in zip(blocks.units, subnet.units)]
    return SubNetwork.from_layers(subnet.layers, heads, units)


# --- mask tuning ---------------------------------------------------------------------------------------------


@dataclass
class BlockFit:
    layer: int
    block: str  # "attention" or "ffn"
    kept: int  # heads or neurons whose scales were fitted
    before: float  # mean squared error of the block's output (LayerNorm input) with all scales 1
    after: float  # the same with the fitted scales: never larger


@dataclass
class MaskTuning:
    model: PreTrainedModel  # full-size copy with the fitted scales folded in; cut it with adapter.extract
    fits: list[BlockFit]

    def summary(self) -> dict[str, float]:
        return {"reconstruction_before": sum(f.before for f in self.fits) / max(1, len(self.fits)),
                "reconstruction_after": sum(f.after for f in self.fits) / max(1, len(self.fits))}


class _Stop(Exception):
    """Raised by a capture hook once it has what it needs: the rest of the forward pass is skipped."""


def _capture(store: list):
    def hook(module, args, kwargs):
        store.append((args, kwargs))
        raise _Stop

    return hook


def _call_until(module: nn.Module, watched: nn.Module, *args, **kwargs) -> tuple[tuple, dict]:
    """Run `module(*args, **kwargs)` until `watched` is called; return the arguments `watched` got."""
    captured: list = []
    handle = watched.register_forward_pre_hook(_capture(captured), with_kwargs=True)
    try:
        module(*args, **kwargs)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{type(watched).__name__} was not called")
    return captured[0]


class _LeastSquares:
    """Normal equations of min_s ||W (x * s) + b + residual - target||^2 over groups of input columns
    (a head's head_dim columns, or one neuron), accumulated over tokens in float64 on the CPU."""

    def __init__(self, linear: nn.Linear, groups: tuple[int, ...], group_size: int):
        self.linear, self.group_size, self.groups = linear, group_size, len(groups)
        self.columns = torch.tensor([g * group_size + j for g in groups for j in range(group_size)], dtype=torch.long)
        self.weight = linear.weight.detach()[:, self.columns].cpu().double()
        self.bias = linear.bias.detach().cpu().double() if linear.bias is not None else 0.0
        width = len(self.columns)
        self.xtx = torch.zeros(width, width, dtype=torch.float64)
        self.xr = torch.zeros(width, dtype=torch.float64)
        self.rr = 0.0
        self.count = 0

    def add(self, x: torch.Tensor, residual: torch.Tensor, target: torch.Tensor) -> None:
        x = x[:, self.columns].cpu().double()
        remainder = target.cpu().double() - self.bias - residual.cpu().double()
        self.xtx += x.T @ x
        self.xr += (x * (remainder @ self.weight)).sum(0)
        self.rr += float(remainder.pow(2).sum())
        self.count += remainder.numel()

    def solve_and_fold(self) -> tuple[float, float]:
        """Fit the scales, fold them into the linear's weight columns, return the error before and after."""
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
        with torch.no_grad():
            weight = self.linear.weight
            weight[:, self.columns.to(weight.device)] *= scales.repeat_interleave(size).to(weight.device, weight.dtype)
        return before, after


def _blocks(layer: nn.Module, subnet: SubNetwork, index: int, head_dim: int):
    """(name, module whose inputs are (x, residual), its output projection, kept groups, group size)."""
    return (("attention", layer.attention.output, layer.attention.output.dense, subnet.heads[index], head_dim),
            ("ffn", layer.output, layer.output.dense, subnet.units[index], 1))


def tune_masks(teacher: PreTrainedModel, adapter: ModelAdapter, subnet: SubNetwork, data: TokenizedSplit, *,
               batch_size: int = 32) -> MaskTuning:
    """A copy of `teacher` whose sub-network `subnet` reproduces the teacher's layer outputs as closely as
    per-head / per-neuron output scales allow (least squares, one layer block at a time)."""
    shape = adapter.shape(teacher)
    student = copy.deepcopy(teacher).eval()
    teacher.eval()
    device = next(teacher.parameters()).device
    batches = [{k: v.to(device) for k, v in b.items() if k != "labels"} for b in data.batches(batch_size)]
    tokens = [b["attention_mask"].bool() for b in batches]  # padding is no part of the fit
    teacher_layers, student_layers = adapter.layers(teacher), adapter.layers(student)
    fits: list[BlockFit] = []
    with torch.no_grad():
        # What the encoder passes to its first layer (embeddings, attention mask), per batch; identical for the
        # student, whose embeddings are a copy. Layers are then run one at a time on stored hidden states.
        calls = [_call_until(teacher, teacher_layers[0], **batch) for batch in batches]
        teacher_states = [args[0] for args, _ in calls]
        student_states = list(teacher_states)

        def run(layer: nn.Module, states: list[torch.Tensor]) -> list[torch.Tensor]:
            return [layer(state, *args[1:], **kwargs) for state, (args, kwargs) in zip(states, calls)]

        with adapter.masked(student, subnet):
            for index in range(shape.num_layers):
                targets = _layer_targets(teacher_layers[index], teacher_states, calls, tokens)
                teacher_states = run(teacher_layers[index], teacher_states)
                if index not in subnet.layers:
                    continue
                layer = student_layers[index]
                for name, module, linear, groups, size in _blocks(layer, subnet, index, shape.head_dim):
                    if not groups:
                        continue
                    problem = _LeastSquares(linear, groups, size)
                    for state, (args, kwargs), mask, target in zip(student_states, calls, tokens, targets[name]):
                        (x, residual), _ = _call_until(layer, module, state, *args[1:], **kwargs)
                        problem.add(x[mask], residual[mask], target)
                    before, after = problem.solve_and_fold()
                    fits.append(BlockFit(index, name, len(groups), before, after))
                student_states = run(layer, student_states)
    return MaskTuning(student, fits)


def _layer_targets(layer: nn.Module, states: list[torch.Tensor], calls: list, tokens: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """The unpruned layer's LayerNorm inputs (block output + residual) on real tokens, per block and batch."""
    targets: dict[str, list[torch.Tensor]] = {"attention": [], "ffn": []}
    norms = {"attention": layer.attention.output.LayerNorm, "ffn": layer.output.LayerNorm}
    current: dict[str, torch.Tensor] = {}
    handles = [norm.register_forward_pre_hook(lambda module, args, name=name: current.__setitem__(name, args[0]))
               for name, norm in norms.items()]
    try:
        for state, (args, kwargs), mask in zip(states, calls, tokens):
            layer(state, *args[1:], **kwargs)
            for name in targets:
                targets[name].append(current[name][mask])
    finally:
        for handle in handles:
            handle.remove()
    return targets


class RFP(Importance):
    """Kwon et al.'s retraining-free pruning of a fine-tuned model, one run per budget: importance pruning with
    Fisher scores, mask rearrangement and mask tuning.

    Simplifications: a parameter budget instead of FLOPs (the same search with other costs); mask tuning uses
    `tune_samples` of the Fisher examples and a plain least-squares solve (no damping or clamping: a fit that
    does not lower the error is dropped); per-example rather than per-batch gradients."""

    name = "rfp"

    def prepare(self) -> None:
        grads = mask_gradients(self.model, self.adapter, self.samples, batch_size=self.settings.batch_size)
        self.scores = fisher_scores(grads)
        self.blocks = FisherBlocks.from_gradients(grads)
        self.tune_data = self.samples.subset(range(min(self.settings.tune_samples, len(self.samples))))

    def prune(self, config: Config) -> Candidate:
        subnet = rearrange(search_mask(self.scores, self.shape, self.adapter, config["budget"]), self.blocks)
        tuned = tune_masks(self.model, self.adapter, subnet, self.tune_data, batch_size=self.settings.batch_size)
        return Candidate(config, subnet, tuned.model, tuned.summary())

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "fisher_samples": len(self.samples)}
