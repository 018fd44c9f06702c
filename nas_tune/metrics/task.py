"""Task quality as GLUE reports it, plus "error" (1 - primary metric) for the search to minimise.

Causal language modelling reports perplexity, and its error is 1 - 1/perplexity = 1 - exp(-mean token NLL):
one minus the geometric-mean probability of the true next token. It lies in [0, 1) like every other error
and is a fixed function of perplexity (no per-run scaling), so hypervolumes against the reference point 1
compare across runs, models and searchers; raw NLL or perplexity is unbounded and would be clipped at 1.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from nas_tune.data.tasks import TaskSpec


def score(task: TaskSpec, predictions: np.ndarray | torch.Tensor, labels) -> dict[str, float]:
    """Every metric of the task (mrpc/qqp: f1 + accuracy; cola: matthews_correlation + accuracy; regression:
    pearson + spearman; others: accuracy) and "error" = 1 - task.metric.

    predictions: logits [N, num_labels] (argmax is taken), class ids [N], or values [N] / [N, 1] for regression;
    for causal LM, logits [N, T, vocabulary] with labels [N, T] (see `language_model_score`).
    """
    if task.causal_lm:
        return language_model_score(
            *next_token_nll(torch.as_tensor(predictions), torch.as_tensor(labels), reduction="sum")
        )
    values = _numpy(predictions)
    truth = _numpy(labels).reshape(-1)
    if task.is_regression:
        values = values.reshape(-1)
        metrics = {"pearson": _correlation(pearsonr, values, truth), "spearman": _correlation(spearmanr, values, truth)}
    else:
        if values.ndim == 2:
            if values.shape[1] != task.num_labels:
                raise ValueError(f"expected logits with {task.num_labels} columns for {task.name}, got {values.shape}")
            values = values.argmax(axis=1)
        values = values.astype(np.int64)
        truth = truth.astype(np.int64)
        metrics = {"accuracy": float(accuracy_score(truth, values))}
        if task.metric == "f1":
            metrics["f1"] = float(f1_score(truth, values, zero_division=0.0))
        elif task.metric == "matthews_correlation":
            with warnings.catch_warnings():  # constant predictions warn and give 0.0, which is the right score
                warnings.simplefilter("ignore")
                metrics["matthews_correlation"] = float(matthews_corrcoef(truth, values))
    if task.metric not in metrics:
        raise ValueError(f"task {task.name} has primary metric {task.metric!r}, which score() does not compute")
    metrics["error"] = 1.0 - metrics[task.metric]
    return metrics


def _numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy() if values.is_floating_point() else values.cpu().numpy()
    return np.asarray(values)


def _correlation(statistic, predictions: np.ndarray, truth: np.ndarray) -> float:
    """Correlation, with 0.0 where it is undefined (constant input, fewer than two rows) instead of NaN."""
    if len(truth) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(statistic(predictions, truth)[0])
    return 0.0 if np.isnan(value) else value


IGNORED_LABEL = -100  # a target position that is not predicted (the convention of torch and transformers)


def next_token_nll(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Negative log-likelihood of each next token (position t predicts labels[t + 1]) and how many tokens count.

    Positions labelled IGNORED_LABEL are skipped; `reduction` is "mean" (the training loss) or "sum".
    """
    targets = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORED_LABEL, reduction=reduction
    )
    return nll, int((targets != IGNORED_LABEL).sum())


def language_model_score(total_nll: float | torch.Tensor, num_tokens: int) -> dict[str, float]:
    """Mean token NLL (nats), perplexity = exp(NLL) and error = 1 - 1/perplexity (see the module docstring)."""
    if num_tokens < 1:
        raise ValueError("language_model_score needs at least one predicted token")
    nll = float(total_nll) / num_tokens
    perplexity = math.exp(nll) if nll < math.log(sys.float_info.max) else math.inf
    return {"nll": nll, "perplexity": perplexity, "error": -math.expm1(-nll)}
