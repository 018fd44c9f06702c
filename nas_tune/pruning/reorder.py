"""`--reorder importance`: permute each layer's heads and FFN neurons so the most important come first.

The search spaces keep "the first k" heads / neurons (the reference convention); after this permutation the
first k are the k most important, as DynaBERT's network rewiring arranges them before training. The adapter's
`permute_layer` moves a head with all its rows and columns (under grouped-query attention, whole key/value
groups with their query heads) and a neuron with its row and column: the network computes exactly the same
function (up to floating-point summation order), so it can run before super-network training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from nas_tune.data import TokenizedSplit
from nas_tune.models import LoadedModel, ModelAdapter, ModelShape
from nas_tune.pruning.scores import Scores, first_order_scores, mask_gradients, training_sample


@dataclass(frozen=True)
class Reordering:
    heads: tuple[tuple[int, ...], ...]  # per layer: the old index of the head now at each position, best first
    units: tuple[tuple[int, ...], ...]

    @classmethod
    def by_scores(cls, scores: Scores, shape: ModelShape) -> Reordering:
        """Best first; under GQA the key/value groups by the total score of their query heads, then the heads
        within each group (the spaces keep the first groups and the first heads of each)."""
        units = tuple(tuple(row.tolist()) for row in torch.argsort(scores.units, dim=1, descending=True, stable=True))
        return cls(tuple(_head_order(row, shape.group_size) for row in scores.heads), units)


def _head_order(scores: torch.Tensor, group_size: int) -> tuple[int, ...]:
    groups = scores.view(-1, group_size)
    group_order = torch.argsort(groups.sum(1), descending=True, stable=True).tolist()
    within = torch.argsort(groups, dim=1, descending=True, stable=True)
    return tuple(g * group_size + j for g in group_order for j in within[g].tolist())


def apply_reordering(model: PreTrainedModel, adapter: ModelAdapter, reordering: Reordering) -> None:
    """Permute `model`'s heads and neurons in place (new parameter tensors: do this before building an optimizer)."""
    for index, (heads, units) in enumerate(zip(reordering.heads, reordering.units)):
        adapter.permute_layer(model, index, heads, units)


def reorder_by_importance(
    loaded: LoadedModel, train: TokenizedSplit, *, num_samples: int = 2048, seed: int = 0, batch_size: int = 32
) -> Reordering:
    """Score heads and neurons by first-order importance on training examples (the task loss with the model's
    current classifier) and permute `loaded.model` so each layer's most important come first."""
    samples = training_sample(train, num_samples, seed, "--reorder importance")
    grads = mask_gradients(loaded.model, loaded.adapter, samples, batch_size=batch_size)
    reordering = Reordering.by_scores(first_order_scores(grads), loaded.adapter.shape(loaded.model))
    apply_reordering(loaded.model, loaded.adapter, reordering)
    return reordering
