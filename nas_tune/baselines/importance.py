"""First-order head and neuron importance and pruning by it, without retraining: Michel et al. (2019) for
classifiers, LLM-Pruner's first-order Taylor score (Ma et al. 2023) for causal language models.

Scales m = 1 multiply every head's context vector and every FFN neuron's activation (`adapter.scaled`, with
scales that require grad). dL/dm is the first-order change of the loss if a head or neuron were removed;
it equals LLM-Pruner's vector-wise Taylor score sum_j W_j dL/dW_j of the output projection's columns that read
the head or neuron. The scales get one copy per example, so one backward pass yields per-example gradients:
Michel's score E|dL/dm| here, LLM-Pruner's |E dL/dm| (the loss change on the calibration set) for a causal LM,
the empirical Fisher E[(dL/dm)^2] for `rfp`. Under grouped-query attention the mask search keeps whole key/value
groups and the same number of query heads in each kept group of a layer, so every result is a valid GQA model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate, GridBaseline
from nas_tune.errors import UserError
from nas_tune.models import ModelAdapter, ModelShape, SubNetwork
from nas_tune.pruning.scores import (
    Scores,
    first_order_scores,
    mask_gradients,
    taylor_scores,
    training_sample,
)
from nas_tune.search_space import Config


@dataclass(frozen=True)
class _AttentionChoice:
    """One layer's attention as the mask search may keep it: these heads, costing `cost` parameters."""

    heads: tuple[int, ...]
    cost: int
    score: float


def _attention_choices(scores: torch.Tensor, shape: ModelShape, adapter: ModelAdapter) -> list[_AttentionChoice]:
    """Every GQA-valid way to keep g key/value groups with q query heads each, at its best: each group's top q heads,
    the g groups whose top q score most (without GQA, groups of one head: the top g heads)."""
    fixed = adapter.layer_parameter_count(shape, 0, 0, num_kv_heads=0)
    group = shape.group_size
    grouped = scores.double().reshape(shape.kv_heads, group)
    choices = [_AttentionChoice((), 0, 0.0)]
    for per_group in range(1, group + 1):
        top, index = grouped.topk(per_group, dim=1, sorted=True)
        group_scores, group_order = top.sum(1).sort(descending=True, stable=True)
        for kept in range(1, shape.kv_heads + 1):
            groups = group_order[:kept].tolist()
            heads = tuple(sorted(g * group + int(h) for g in groups for h in index[g]))
            cost = adapter.layer_parameter_count(shape, len(heads), 0, num_kv_heads=kept) - fixed
            choices.append(_AttentionChoice(heads, cost, float(group_scores[:kept].sum())))
    return choices


def _best_attention(layer_choices: list[list[_AttentionChoice]], allowed: int) -> list[tuple[int, float, list[int]]]:
    """The Pareto set of (attention parameters, total head score, choice per layer) over all layers within `allowed`:
    for each reachable cost the best score, cheaper states that score no less having removed dearer ones."""
    states: list[tuple[int, float, list[int]]] = [(0, 0.0, [])]
    for choices in layer_choices:
        grown = sorted(
            (
                (cost + c.cost, score + c.score, [*picked, k])
                for cost, score, picked in states
                for k, c in enumerate(choices)
                if cost + c.cost <= allowed
            ),
            key=lambda s: (s[0], -s[1]),
        )
        states = []
        for state in grown:
            if not states or state[1] > states[-1][1]:
                states.append(state)
    return states


def search_mask(scores: Scores, shape: ModelShape, adapter: ModelAdapter, budget: float) -> SubNetwork:
    """The heads and neurons with the largest total score within `budget` of the layer parameters (Kwon et al.'s
    mask search, made GQA-valid). All neurons cost the same, so for each way of keeping heads the best mask fills
    what is left with the top neurons; the heads' part is exact over every layer's GQA-valid choices (a Pareto
    dynamic programme over layers). Exact for additive scores. Every layer stays (a layer without heads and
    neurons still applies its biases and norms)."""
    fixed = adapter.layer_parameter_count(shape, 0, 0, num_kv_heads=0)
    unit_cost = adapter.layer_parameter_count(shape, 0, 1, num_kv_heads=0) - fixed
    layer_full = adapter.layer_parameter_count(shape, shape.num_heads, shape.ffn_size)
    if adapter.layer_parameter_count(shape, shape.num_heads, 0) + shape.ffn_size * unit_cost != layer_full:
        raise ValueError("mask search needs a layer size that is linear in its neurons")
    allowed = math.floor(budget * shape.num_layers * layer_full) - shape.num_layers * fixed
    if allowed < 0:
        raise UserError(
            f"budget {budget} is below the size of the layers without any head or neuron "
            f"({fixed / layer_full:.4f}); pick a larger budget."
        )
    layer_choices = [_attention_choices(scores.heads[i], shape, adapter) for i in range(shape.num_layers)]
    unit_scores, unit_order = scores.units.flatten().double().sort(descending=True, stable=True)
    unit_sum = torch.cat([torch.zeros(1, dtype=torch.float64), unit_scores.cumsum(0)]).tolist()

    def total(state: tuple[int, float, list[int]]) -> float:
        return state[1] + unit_sum[min((allowed - state[0]) // unit_cost, len(unit_scores))]

    cost, _, picked = max(_best_attention(layer_choices, allowed), key=total)
    heads = [choices[k].heads for choices, k in zip(layer_choices, picked)]
    kept_units = unit_order[: min((allowed - cost) // unit_cost, len(unit_scores))]
    units = [[] for _ in range(shape.num_layers)]
    for index in kept_units.tolist():
        units[index // shape.ffn_size].append(index % shape.ffn_size)
    return SubNetwork.from_layers(range(shape.num_layers), heads, units)


class Importance(GridBaseline):
    """Prune the heads and neurons with the lowest first-order importance of a trained model; no retraining.

    A classifier is pruned with Michel et al.'s score, a causal LM with LLM-Pruner's Taylor score. Simplifications:
    neurons are pruned as well as heads (LLM-Pruner: its FFN channels), scores are not normalised per layer and no
    layer range is protected (raw scores are loss changes, comparable between heads, neurons and layers, and the
    mask search allocates the budget over all layers), and one score pass serves every budget (no iterative
    re-scoring, no recovery fine-tuning)."""

    name = "importance"
    space = "large"
    prunes_finetuned = True
    adapters = (ModelAdapter,)  # `adapter.scaled`: every family

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        self.samples = training_sample(inputs.train, settings.num_samples, settings.seed, self.name)

    def prepare(self) -> None:
        grads = mask_gradients(self.model, self.adapter, self.samples, batch_size=self.settings.batch_size)
        self.scores = taylor_scores(grads) if self.inputs.task.causal_lm else first_order_scores(grads)

    def prune(self, config: Config) -> Candidate:
        return Candidate(config, search_mask(self.scores, self.shape, self.adapter, config["budget"]), self.model)
