"""Start a fresh task head at the label prior instead of zero.

A freshly initialised head predicts 0 for regression (STS-B labels average ~2.7) and a uniform
distribution for classification. AdamW at fine-tuning learning rates moves a bias by ~lr per step, so in
a short budget the offset is learned through pooler and body instead, and at the start most of every
sub-network's gradient is spent on it. Setting the bias to the training labels' mean (regression) or
log class frequencies (classification) removes that offset before the first step, for every method.
"""

from __future__ import annotations

import torch

from nas_tune.models import LoadedModel
from nas_tune.settings import HEAD_INIT_CHOICES  # noqa: F401  (re-exported)


def label_prior_bias(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Mean label for regression; log class frequencies (add-one smoothed) for classification."""
    if num_labels == 1:
        return labels.float().mean().reshape(1)
    counts = torch.bincount(labels.long(), minlength=num_labels).float() + 1.0
    return torch.log(counts / counts.sum())


def initialise_head_bias(loaded: LoadedModel, labels: torch.Tensor) -> bool:
    """Set a freshly initialised head's bias to the label prior; a fine-tuned head is left alone.

    Returns whether it changed anything; afterwards the head no longer counts as new, so calling it
    again (the super-network run and the training loop both do) is harmless. A causal LM's head is its
    pre-trained vocabulary projection (never new), so it is never touched or even looked up.
    """
    if not loaded.head_is_new:
        return False
    bias = loaded.adapter.head_bias(loaded.model)
    if bias is None:
        return False
    with torch.no_grad():
        bias.copy_(label_prior_bias(labels, bias.numel()).to(bias.dtype))
    loaded.head_is_new = False
    return True
