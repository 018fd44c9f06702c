"""First-order head and neuron importance (Michel et al. 2019) and pruning by it, without retraining.

Mask variables m = 1 multiply every head's context vector and every FFN neuron's activation (the same
pre-hooks `adapter.masked` uses, with the masks as tensors that require grad). dL/dm is the first-order
change of the loss if a head or neuron were removed. The masks get one copy per example, so one backward
pass yields per-example gradients: Michel's score E|dL/dm| here, the empirical Fisher E[(dL/dm)^2] for `rfp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from transformers import PreTrainedModel

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate, GridBaseline
from nas_tune.data import TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.models import ModelAdapter, ModelShape, SubNetwork
from nas_tune.models.slicing import mask_head_outputs as _mask_head_outputs
from nas_tune.models.slicing import mask_units as _mask_units
from nas_tune.search_space import Config

# Below this many examples per-head/neuron gradient statistics rank units unreliably; Kwon et al. use 2048.
MIN_SAMPLES = 128


@dataclass
class MaskGradients:
    heads: torch.Tensor  # [examples, layers, heads]: dL_i/dm per example i, masks at 1
    units: torch.Tensor  # [examples, layers, ffn_size]


@dataclass
class Scores:
    heads: torch.Tensor  # [layers, heads]: larger = more important
    units: torch.Tensor  # [layers, ffn_size]


def training_sample(train: TokenizedSplit, num_samples: int, seed: int, method: str) -> TokenizedSplit:
    """A seeded subset of at most `num_samples` training examples; too few examples is a user error."""
    if num_samples < MIN_SAMPLES or len(train) < MIN_SAMPLES:
        have = f"--num-samples is {num_samples}" if num_samples < MIN_SAMPLES else f"the training split has only {len(train)}"
        raise UserError(f"{method} needs at least {MIN_SAMPLES} training examples for its importance estimate "
                        f"(2048 recommended) but {have}; raise --num-samples or --max-train-samples.")
    count = min(num_samples, len(train))
    return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False)))


def mask_gradients(model: PreTrainedModel, adapter: ModelAdapter, data: TokenizedSplit, *, batch_size: int = 32) -> MaskGradients:
    """Per-example gradients of the task loss (the model's own: cross-entropy or MSE) w.r.t. head and neuron masks."""
    shape = adapter.shape(model)
    layers = adapter.layers(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout: the gradients describe the deterministic network
    heads, units = [], []
    try:
        for batch in data.batches(batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            n = len(batch["labels"])
            head_mask = torch.ones(n, shape.num_layers, shape.num_heads, device=device, requires_grad=True)
            unit_mask = torch.ones(n, shape.num_layers, shape.ffn_size, device=device, requires_grad=True)
            handles = []
            for i, layer in enumerate(layers):
                # [n, 1, heads] and [n, 1, ffn] broadcast over the tokens of each example
                hook = partial(_mask_head_outputs, mask=head_mask[:, i, None, :], head_dim=shape.head_dim)
                handles.append(layer.attention.output.dense.register_forward_pre_hook(hook))
                handles.append(layer.output.dense.register_forward_pre_hook(partial(_mask_units, mask=unit_mask[:, i, None, :])))
            try:
                loss = model(**batch).loss * n  # the mean loss times n: each example's mask gets its own gradient
            finally:
                for handle in handles:
                    handle.remove()
            head_grad, unit_grad = torch.autograd.grad(loss, [head_mask, unit_mask])
            heads.append(head_grad.cpu())
            units.append(unit_grad.cpu())
    finally:
        model.train(was_training)
    return MaskGradients(torch.cat(heads), torch.cat(units))


def first_order_scores(grads: MaskGradients) -> Scores:
    """Michel et al.'s importance: the expected absolute first-order loss change, E|dL/dm|."""
    return Scores(grads.heads.abs().mean(0), grads.units.abs().mean(0))


def search_mask(scores: Scores, shape: ModelShape, adapter: ModelAdapter, budget: float) -> SubNetwork:
    """The heads and neurons with the largest total score within `budget` of the layer parameters (Kwon et al.'s
    mask search). All heads cost the same, and so do all neurons, so for each number k of heads the best mask
    keeps the top-k heads and fills what is left with the top neurons; the best k wins. Exact for additive
    scores. Every layer stays (a layer without heads and neurons still applies its biases and LayerNorms)."""
    fixed = adapter.layer_parameter_count(shape, 0, 0)
    head_cost = adapter.layer_parameter_count(shape, 1, 0) - fixed
    unit_cost = adapter.layer_parameter_count(shape, 0, 1) - fixed
    layer_full = adapter.layer_parameter_count(shape, shape.num_heads, shape.ffn_size)
    if layer_full != fixed + shape.num_heads * head_cost + shape.ffn_size * unit_cost:
        raise ValueError("mask search needs a layer size that is linear in its heads and neurons")
    allowed = math.floor(budget * shape.num_layers * layer_full) - shape.num_layers * fixed
    if allowed < 0:
        raise UserError(f"budget {budget} is below the size of the layers without any head or neuron "
                        f"({fixed / layer_full:.4f}); pick a larger budget.")
    head_scores, head_order = scores.heads.flatten().double().sort(descending=True, stable=True)
    unit_scores, unit_order = scores.units.flatten().double().sort(descending=True, stable=True)
    num_heads = torch.arange(len(head_scores) + 1)
    num_units = torch.div(allowed - num_heads * head_cost, unit_cost, rounding_mode="floor").clamp(max=len(unit_scores))
    head_sum = torch.cat([torch.zeros(1, dtype=torch.float64), head_scores.cumsum(0)])
    unit_sum = torch.cat([torch.zeros(1, dtype=torch.float64), unit_scores.cumsum(0)])
    kept = torch.where(num_units >= 0, head_sum + unit_sum[num_units.clamp(min=0)], -math.inf)
    best = int(kept.argmax())
    return _subnetwork(shape, head_order[:best], unit_order[: int(num_units[best])])


def _subnetwork(shape: ModelShape, flat_heads: torch.Tensor, flat_units: torch.Tensor) -> SubNetwork:
    """Flat [layer * count + index] selections -> a SubNetwork that keeps every layer."""
    heads = [[] for _ in range(shape.num_layers)]
    units = [[] for _ in range(shape.num_layers)]
    for index in flat_heads.tolist():
        heads[index // shape.num_heads].append(index % shape.num_heads)
    for index in flat_units.tolist():
        units[index // shape.ffn_size].append(index % shape.ffn_size)
    return SubNetwork.from_layers(range(shape.num_layers), heads, units)


class Importance(GridBaseline):
    """Prune the heads and neurons with the lowest first-order importance of a fine-tuned model; no retraining.

    Simplifications vs. Michel et al.: neurons are pruned as well as heads, scores are not normalised per
    layer (raw scores are loss changes, comparable between heads and neurons), and one score pass serves
    every budget (no iterative re-scoring)."""

    name = "importance"
    space = "large"
    prunes_finetuned = True

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        self.samples = training_sample(inputs.train, settings.num_samples, settings.seed, self.name)

    def prepare(self) -> None:
        self.scores = first_order_scores(mask_gradients(self.model, self.adapter, self.samples, batch_size=self.settings.batch_size))

    def prune(self, config: Config) -> Candidate:
        return Candidate(config, search_mask(self.scores, self.shape, self.adapter, config["budget"]), self.model)
