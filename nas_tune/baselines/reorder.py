"""`--reorder importance`: permute each layer's heads and FFN neurons so the most important come first.

The search spaces keep "the first k" heads / neurons (the reference convention); after this permutation the
first k are the k most important, as DynaBERT's network rewiring arranges them before training. A head moves
as a block of query/key/value rows together with its columns of the attention output projection, a neuron as
a row of the intermediate projection together with its column of the output projection: the network computes
exactly the same function (up to floating-point summation order), so it can run before super-network training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from nas_tune.baselines.importance import Scores, first_order_scores, mask_gradients, training_sample
from nas_tune.data import TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.models import LoadedModel, ModelAdapter
from nas_tune.models.bert import BertFamilyAdapter
from nas_tune.models.slicing import sliced_copy as _sliced_copy
from nas_tune.settings import REORDER_CHOICES  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Reordering:
    heads: tuple[tuple[int, ...], ...]  # per layer: the old index of the head now at each position, best first
    units: tuple[tuple[int, ...], ...]

    @classmethod
    def by_scores(cls, scores: Scores) -> Reordering:
        def order(values: torch.Tensor) -> tuple[tuple[int, ...], ...]:
            return tuple(tuple(row.tolist()) for row in torch.argsort(values, dim=1, descending=True, stable=True))

        return cls(order(scores.heads), order(scores.units))


def _require_bert_family(model: PreTrainedModel, adapter: ModelAdapter) -> None:
    if not isinstance(adapter, BertFamilyAdapter):
        raise UserError(f"--reorder supports BERT-family models (bert, roberta), not '{model.config.model_type}'; drop --reorder.")


def apply_reordering(model: PreTrainedModel, adapter: ModelAdapter, reordering: Reordering) -> None:
    """Permute `model`'s heads and neurons in place (new parameter tensors: do this before building an optimizer)."""
    _require_bert_family(model, adapter)
    head_dim = adapter.shape(model).head_dim
    for layer, heads, units in zip(adapter.layers(model), reordering.heads, reordering.units):
        # slicing to *all* heads and units, in the new order, is a permutation
        BertFamilyAdapter._slice_layer(layer, heads, units, head_dim, _sliced_copy)


def reorder_by_importance(loaded: LoadedModel, train: TokenizedSplit, *, num_samples: int = 2048, seed: int = 0,
                          batch_size: int = 32) -> Reordering:
    """Score heads and neurons by first-order importance on training examples (the task loss with the model's
    current classifier) and permute `loaded.model` so each layer's most important come first."""
    _require_bert_family(loaded.model, loaded.adapter)
    samples = training_sample(train, num_samples, seed, "--reorder importance")
    reordering = Reordering.by_scores(first_order_scores(mask_gradients(loaded.model, loaded.adapter, samples, batch_size=batch_size)))
    apply_reordering(loaded.model, loaded.adapter, reordering)
    return reordering
