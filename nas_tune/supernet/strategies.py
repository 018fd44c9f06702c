"""Super-network training strategies: how one batch turns into gradients.

Every strategy implements one call, `step(model, batch, progress) -> loss`, which runs forward and
backward for the sub-networks it trains (gradients accumulate); the training loop stays the same
whatever the strategy. Sub-networks run at their real size with `adapter.sliced`, on the one set of shared weights.
Labels of shape [batch, tokens] are next-token targets (causal language modelling): the loss is then the mean
token NLL and distillation compares the token distributions at every position that has a target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from nas_tune.errors import UserError
from nas_tune.metrics.task import IGNORED_LABEL, next_token_nll
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import SubNetwork
from nas_tune.search_space import SearchSpace
from nas_tune.settings import STRATEGY_ALIASES, STRATEGY_NAMES, SamplingOptions, canonical_strategy
from nas_tune.supernet.sampling import SubnetSampler


@dataclass
class StrategyOptions:
    num_random_subnets: int | None = None  # None: the strategy's default (1 for random/kd, 2 for sandwich)
    temperature: float = 1.0  # in-place distillation temperature (the reference code effectively used 1)
    label_weight: float = 1.0  # weight of the label loss for distilled sub-networks
    kd_weight: float = 1.0  # weight of the distillation loss
    sampling: SamplingOptions = field(default_factory=SamplingOptions)  # which random sub-networks are drawn


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, regression: bool, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """T^2-scaled KL to the teacher's softened distributions over the last dim, averaged over the positions
    `mask` keeps (all when None: one per example for a classifier); MSE to its prediction for regression (STS-B)."""
    if regression:
        return F.mse_loss(student, teacher)
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), reduction="none", log_target=True
    ).sum(-1)
    return (kl if mask is None else kl[mask]).mean() * t * t


def predict(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits of `batch` (labels left out); a causal LM builds no KV cache, which training never reads."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if batch["labels"].ndim == 2:
        inputs["use_cache"] = False
    return model(**inputs).logits


class Strategy(ABC):
    name: ClassVar[str]
    default_random_subnets: ClassVar[int] = 1

    uses_teacher: ClassVar[bool] = False

    def __init__(
        self,
        adapter: ModelAdapter,
        space: SearchSpace,
        rng: np.random.Generator,
        options: StrategyOptions | None = None,
        teacher: PreTrainedModel | None = None,
    ):
        """`teacher`: a fixed model (e.g. a standard fine-tuned one) that distils every sub-network, the largest
        included, instead of the in-place largest sub-network; only for strategies that distil."""
        self.adapter = adapter
        self.space = space
        self.rng = rng
        self.options = options or StrategyOptions()
        if teacher is not None:
            require_distillation(self.name)
        self.teacher = teacher
        self.sampler = SubnetSampler(space, adapter, space.shape, self.options.sampling)
        self.num_random = (
            self.options.num_random_subnets
            if self.options.num_random_subnets is not None
            else self.default_random_subnets
        )
        self.largest = space.to_subnetwork(space.largest())
        self.smallest = space.to_subnetwork(space.smallest())

    @abstractmethod
    def step(self, model: PreTrainedModel, batch: dict[str, torch.Tensor], progress: float) -> float:
        """Forward + backward of this step's sub-networks; `progress` runs from 0 to 1 over training."""

    def random_subnets(self) -> list[SubNetwork]:
        return [self.sampler.sample(self.rng) for _ in range(self.num_random)]

    def _backward(self, model, subnet: SubNetwork, batch, loss_of) -> tuple[float, torch.Tensor]:
        """Forward, `loss_of(logits)` and backward of `subnet`; the loss and the detached logits.

        The backward runs inside the sliced context: with gradient checkpointing, layers run again during it and must
        see the same sliced weights as in the forward pass.
        """
        with self.adapter.sliced(model, subnet):
            logits = predict(model, batch)
            loss = loss_of(logits)
            loss.backward()
        return loss.item(), logits.detach()

    def _label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == 2:
            return next_token_nll(logits, labels)[0]
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), labels.float())
        return F.cross_entropy(logits, labels)

    def _distillation_loss(self, logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == 2:  # the distributions over each next token that has a target, as in the label loss
            return distillation_loss(
                logits[:, :-1], teacher[:, :-1], self.options.temperature, False, mask=labels[:, 1:] != IGNORED_LABEL
            )
        return distillation_loss(logits, teacher, self.options.temperature, teacher.shape[-1] == 1)

    def _train_on_labels(self, model, subnets: list[SubNetwork], batch) -> float:
        labels = batch["labels"]
        losses = [
            self._backward(model, subnet, batch, lambda logits: self._label_loss(logits, labels))[0]
            for subnet in subnets
        ]
        return sum(losses) / len(subnets)

    def _train_with_teacher(self, model, students: list[SubNetwork], batch) -> float:
        """The largest sub-network learns from labels; its detached outputs teach the `students`.

        With a fixed teacher model, that model's outputs teach the largest sub-network too.
        """
        labels = batch["labels"]

        def label_loss(logits: torch.Tensor) -> torch.Tensor:
            return self._label_loss(logits, labels)

        if self.teacher is not None:
            with torch.no_grad():
                teacher = predict(self.teacher, batch)
            students, total = [self.largest, *students], 0.0
        else:
            total, teacher = self._backward(model, self.largest, batch, label_loss)
        options = self.options

        def student_loss(logits: torch.Tensor) -> torch.Tensor:
            on_labels = options.label_weight * label_loss(logits)
            return on_labels + options.kd_weight * self._distillation_loss(logits, teacher, labels)

        total += sum(self._backward(model, subnet, batch, student_loss)[0] for subnet in students)
        return total / (len(students) + (self.teacher is None))


class Standard(Strategy):
    """Plain fine-tuning of the full network; sub-networks are only searched afterwards."""

    name = "standard"

    def step(self, model, batch, progress):
        return self._train_on_labels(model, [self.largest], batch)


class Random(Strategy):
    """Each step trains k uniformly sampled sub-networks."""

    name = "random"

    def step(self, model, batch, progress):
        return self._train_on_labels(model, self.random_subnets(), batch)


class LinearRandom(Strategy):
    """Random sub-networks with probability p = progress (0 -> 1 over training), else the full network."""

    name = "linear_random"

    def probability(self, progress: float) -> float:
        return min(max(progress, 0.0), 1.0)

    def step(self, model, batch, progress):
        if self.rng.random() < self.probability(progress):
            return self._train_on_labels(model, self.random_subnets(), batch)
        return self._train_on_labels(model, [self.largest], batch)


class Sandwich(Strategy):
    """The largest, the smallest and k random sub-networks each step, gradients summed."""

    name = "sandwich"
    default_random_subnets = 2

    def step(self, model, batch, progress):
        return self._train_on_labels(model, [self.largest, self.smallest, *self.random_subnets()], batch)


class RandomKD(Strategy):
    """k random sub-networks distilled in place from the full network (which learns from labels)."""

    name = "kd"
    uses_teacher = True

    def step(self, model, batch, progress):
        return self._train_with_teacher(model, self.random_subnets(), batch)


class SandwichKD(Strategy):
    """The paper's best: sandwich rule with in-place distillation from the largest sub-network."""

    name = "sandwich_kd"
    default_random_subnets = 2
    uses_teacher = True

    def step(self, model, batch, progress):
        return self._train_with_teacher(model, [self.smallest, *self.random_subnets()], batch)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Standard, Random, LinearRandom, Sandwich, RandomKD, SandwichKD)
}
ALIASES = STRATEGY_ALIASES
assert tuple(STRATEGIES) == STRATEGY_NAMES, (
    "nas_tune.settings.STRATEGY_NAMES lists every strategy, for the fast command line"
)


def require_distillation(name: str) -> None:
    """Refuse a fixed teacher for a strategy that never distils (it would be ignored silently)."""
    if not STRATEGIES[canonical_strategy(name)].uses_teacher:
        raise UserError(
            f"strategy '{name}' does not distil, so it cannot use --teacher; pick kd or sandwich_kd, or drop --teacher."
        )


def make_strategy(
    name: str,
    adapter: ModelAdapter,
    space: SearchSpace,
    rng: np.random.Generator,
    options: StrategyOptions | None = None,
    teacher: PreTrainedModel | None = None,
) -> Strategy:
    return STRATEGIES[canonical_strategy(name)](adapter, space, rng, options, teacher)
