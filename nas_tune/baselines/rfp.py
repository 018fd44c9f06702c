"""Retraining-free pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers").

Per budget, on a fine-tuned model and a few thousand training examples:
1. Fisher: the diagonal empirical Fisher information of head/neuron masks, sum_i (dL_i/dm)^2, from the
   per-example gradients of `importance.mask_gradients` (computed once for all budgets).
2. Mask search: the mask keeping the most Fisher information within the parameter budget
   (`importance.search_mask`, exact for the diagonal approximation).
3. Mask rearrangement: each layer keeps as many heads / neurons as the search gave it, but which ones is
   chosen greedily to minimise the layer's block-diagonal Fisher estimate of the loss change,
   ||sum over pruned j of g_j||^2 with g_j the per-example gradient vector of unit j.
4. Mask tuning (`pruning.mask_tuning`): layer by layer, one real-valued scale per kept head / neuron, fitted by
   linear least squares so each pruned block's output (projection + residual) matches the unpruned model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate
from nas_tune.baselines.importance import Importance, search_mask
from nas_tune.models import SubNetwork
from nas_tune.pruning.mask_tuning import check_reconstructable, tune_masks
from nas_tune.pruning.scores import MaskGradients, Scores, mask_gradients
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

        return cls(
            [gram(grads.heads[:, i]) for i in range(grads.heads.shape[1])],
            [gram(grads.units[:, i]) for i in range(grads.units.shape[1])],
        )


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
    for index in order[n - keep :]:
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


class RFP(Importance):
    """Kwon et al.'s retraining-free pruning of a fine-tuned model, one run per budget: importance pruning with
    Fisher scores, mask rearrangement and mask tuning.

    Simplifications: a parameter budget instead of FLOPs (the same search with other costs); mask tuning uses
    `tune_samples` of the Fisher examples and a plain least-squares solve (no damping or clamping: a fit that
    does not lower the error is dropped); per-example rather than per-batch gradients."""

    name = "rfp"

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        check_reconstructable(self.model, self.adapter, self.name, "use importance or layer_drop")

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
