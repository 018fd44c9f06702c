"""Head and neuron importance from the gradients of scales on their outputs: the scores that the importance and
rfp baselines prune by and that `--reorder importance` sorts by (why they mean what they do: `nas_tune.baselines.importance`).

Scales m = 1 multiply every head's context vector and every FFN neuron's activation (`adapter.scaled`), with one
copy per example, so one backward pass gives per-example gradients dL_i/dm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from nas_tune.data import TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.evaluate import lm_batch_size
from nas_tune.metrics.task import next_token_nll
from nas_tune.models import ModelAdapter

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
        unit = "blocks of text" if is_causal_lm(train) else "examples"
        have = (
            f"--num-samples is {num_samples}"
            if num_samples < MIN_SAMPLES
            else f"the training split has only {len(train)} {unit}"
        )
        raise UserError(
            f"{method} needs at least {MIN_SAMPLES} training examples for its importance estimate "
            f"(2048 recommended) but {have}; raise --num-samples or --max-train-samples."
        )
    count = min(num_samples, len(train))
    return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), size=count, replace=False)))


def is_causal_lm(data: TokenizedSplit) -> bool:
    """Blocks of text carry a next-token target per position; classification data one label per example."""
    return data.labels.ndim == 2


def mask_gradients(
    model: PreTrainedModel, adapter: ModelAdapter, data: TokenizedSplit, *, batch_size: int = 32
) -> MaskGradients:
    """Per-example gradients of the task loss (cross-entropy, MSE, or the next-token NLL of a causal LM) w.r.t. head
    and neuron masks; a causal LM's batches hold at most LM_TOKENS_PER_BATCH tokens, as in evaluation."""
    shape = adapter.shape(model)
    device = next(model.parameters()).device
    causal_lm = is_causal_lm(data)
    was_training = model.training
    model.eval()  # no dropout: the gradients describe the deterministic network
    heads, units = [], []
    try:
        for batch in data.batches(lm_batch_size(data, batch_size) if causal_lm else batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            n = len(batch["labels"])
            head_mask = torch.ones(n, shape.num_layers, shape.num_heads, device=device, requires_grad=True)
            unit_mask = torch.ones(n, shape.num_layers, shape.ffn_size, device=device, requires_grad=True)
            # [n, 1, heads] and [n, 1, ffn] broadcast over the tokens of each example
            with adapter.scaled(model, head_mask[:, :, None, :].unbind(1), unit_mask[:, :, None, :].unbind(1)):
                if (
                    causal_lm
                ):  # every block predicts the same number of tokens, so n x the mean is a sum of per-block means
                    labels = batch.pop("labels")
                    loss = next_token_nll(model(**batch, use_cache=False).logits, labels)[0]
                else:
                    loss = model(**batch).loss
            head_grad, unit_grad = torch.autograd.grad(
                loss * n, [head_mask, unit_mask]
            )  # each example's mask gets its own gradient
            heads.append(head_grad.cpu())
            units.append(unit_grad.cpu())
    finally:
        model.train(was_training)
    return MaskGradients(torch.cat(heads), torch.cat(units))


def first_order_scores(grads: MaskGradients) -> Scores:
    """Michel et al.'s importance: the expected absolute first-order loss change, E|dL/dm|."""
    return Scores(grads.heads.abs().mean(0), grads.units.abs().mean(0))


def taylor_scores(grads: MaskGradients) -> Scores:
    """LLM-Pruner's first-order Taylor importance |dL(D)/dm|: the loss change on the whole calibration set D."""
    return Scores(grads.heads.mean(0).abs(), grads.units.mean(0).abs())
