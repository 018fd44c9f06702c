"""Task quality as GLUE reports it, plus "error" (1 - primary metric) for the search to minimise."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from nas_tune.data.tasks import TaskSpec


def score(task: TaskSpec, predictions: np.ndarray | torch.Tensor, labels) -> dict[str, float]:
    """Every metric of the task (mrpc/qqp: f1 + accuracy; cola: matthews_correlation + accuracy; regression:
    pearson + spearman; others: accuracy) and "error" = 1 - task.metric.

    predictions: logits [N, num_labels] (argmax is taken), class ids [N], or values [N] / [N, 1] for regression.
    """
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
