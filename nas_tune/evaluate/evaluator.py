"""Evaluate many sub-networks of one model: load once, keep the tokenised data, slice per config.

Each config runs at its real size (weights sliced out of the shared model), so small sub-networks
evaluate faster and search cost follows sub-network size; the largest config is the unpruned model
bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from nas_tune.data import TaskSpec, TokenizedSplit
from nas_tune.metrics.flops import count_flops
from nas_tune.metrics.latency import measure_latency
from nas_tune.metrics.parameters import count_parameters
from nas_tune.metrics.task import language_model_score, next_token_nll, score
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import SubNetwork
from nas_tune.search_space import Config, SearchSpace
from nas_tune.settings import LatencySettings  # declared with the other settings; re-exported


@dataclass
class EvaluationResult:
    config: Config
    metrics: dict[str, float]  # every task metric plus "error" (1 - the primary metric; causal LM: 1 - 1/perplexity)
    layer_params: int
    layer_fraction: float  # "params" objective: fraction of the super-network's layer parameters
    total_params: int
    total_fraction: float
    flops: int
    num_examples: int
    seconds: float
    latency_seconds: float | None = None  # seconds per forward, when asked for (a fraction is named "latency")

    @property
    def error(self) -> float:
        return self.metrics["error"]

    def objectives(self) -> dict[str, float]:
        """The flat metric dict a searcher and the results store see."""
        values = {
            **self.metrics,
            "params": self.layer_fraction,
            "layer_params": self.layer_params,
            "total_params": self.total_params,
            "total_fraction": self.total_fraction,
            "flops": self.flops,
            "num_examples": self.num_examples,
            "eval_seconds": self.seconds,
        }
        if self.latency_seconds is not None:
            values["latency_seconds"] = self.latency_seconds
        return values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A causal LM's logits are tokens x vocabulary floats (49,152 words for SmolLM2: 2,048 tokens are ~400 MB), so
# its evaluation batches hold at most this many tokens whatever the batch size asked for.
LM_TOKENS_PER_BATCH = 2048


def lm_batch_size(data: TokenizedSplit, batch_size: int) -> int:
    """`batch_size`, lowered so a batch of blocks of text holds at most LM_TOKENS_PER_BATCH tokens."""
    return max(1, min(batch_size, LM_TOKENS_PER_BATCH // data.input_ids.shape[1]))


class Evaluator:
    def __init__(
        self,
        model: PreTrainedModel,
        adapter: ModelAdapter,
        search_space: SearchSpace | None,  # None: only `evaluate_subnetwork` is used (the baselines)
        task: TaskSpec,
        data: TokenizedSplit,
        *,
        batch_size: int = 64,
        flops_seq_len: int = 128,
        seed: int = 0,
    ):
        self.model = model.eval()
        self.adapter = adapter
        self.search_space = search_space
        self.task = task
        self.data = data
        self.batch_size = batch_size
        self.flops_seq_len = flops_seq_len
        # A fixed order, so a fidelity f always means the same first f-fraction of the examples.
        self._order = np.random.default_rng(seed).permutation(len(data))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def subset(self, fidelity: float) -> TokenizedSplit:
        if not 0 < fidelity <= 1:
            raise ValueError(f"fidelity must be in (0, 1], got {fidelity}")
        if fidelity == 1:
            return self.data
        count = max(1, math.ceil(fidelity * len(self.data)))
        return self.data.subset(np.sort(self._order[:count]))

    def predict(self, model: PreTrainedModel, data: TokenizedSplit) -> tuple[np.ndarray, np.ndarray]:
        logits, labels = [], []
        with torch.inference_mode():
            for batch in data.batches(self.batch_size, sort_by_length=True):
                labels.append(batch.pop("labels").numpy())
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits.append(model(**batch).logits.float().cpu().numpy())
        return np.concatenate(logits), np.concatenate(labels)

    def metrics(self, model: PreTrainedModel, data: TokenizedSplit) -> dict[str, float]:
        """score() of `model` on `data`."""
        if self.task.causal_lm:
            return language_model_metrics(model, data, self.batch_size)
        return score(self.task, *self.predict(model, data))

    def latency_settings(self, latency: LatencySettings) -> LatencySettings:
        """`latency` with this evaluator's sequence length and the current thread count filled in."""
        return latency.resolved(self.flops_seq_len)

    def evaluate(
        self, config: Config, *, fidelity: float = 1.0, latency: LatencySettings | None = None
    ) -> EvaluationResult:
        """Score a config of the search space."""
        return self.evaluate_subnetwork(
            self.search_space.to_subnetwork(config), fidelity=fidelity, latency=latency, config=config
        )

    def evaluate_subnetwork(
        self,
        subnet: SubNetwork,
        *,
        extracted: PreTrainedModel | None = None,
        fidelity: float = 1.0,
        latency: LatencySettings | None = None,
        config: Config | None = None,
    ) -> EvaluationResult:
        """Score `subnet` of the evaluator's model; `extracted`: that sub-network already cut out, e.g. from a
        tuned copy of the weights (the baselines). Sizes and FLOPs are always those of the evaluator's model."""
        start = time.perf_counter()
        small = (extracted if extracted is not None else self.adapter.extract(self.model, subnet)).eval()
        data = self.subset(fidelity)
        metrics = self.metrics(small, data)
        seconds = time.perf_counter() - start
        size = count_parameters(self.model, self.adapter, subnet)
        timing = self.latency_settings(latency) if latency else None
        return EvaluationResult(
            config=dict(config or {}),
            metrics=metrics,
            layer_params=size.layer_params,
            layer_fraction=size.layer_fraction,
            total_params=size.total_params,
            total_fraction=size.total_fraction,
            flops=count_flops(self.model, self.adapter, subnet, self.flops_seq_len),
            num_examples=len(data),
            seconds=seconds,
            latency_seconds=measure_latency(small, **asdict(timing)) if timing else None,
        )


def language_model_metrics(model: PreTrainedModel, data: TokenizedSplit, batch_size: int = 64) -> dict[str, float]:
    """Perplexity of a causal LM on blocks of text, its token NLL summed batch by batch (all logits never held)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in data.batches(lm_batch_size(data, batch_size)):
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            nll, tokens = next_token_nll(model(**batch, use_cache=False).logits, labels, reduction="sum")
            total, count = total + nll.item(), count + tokens
    return language_model_score(total, count)
