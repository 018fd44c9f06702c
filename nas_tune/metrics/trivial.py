"""The trivial predictor of a task: the best constant prediction, the score any model must beat to mean something.

On RTE always answering the more frequent class already scores about 0.53 accuracy, on MRPC always "equivalent"
gives F1 0.81; a pruned model at or below that has learnt nothing, however small it is. For language modelling
the constant prediction is one distribution for every next token: the split's own token frequencies (unigram).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nas_tune.data.tasks import TaskSpec
from nas_tune.metrics.task import IGNORED_LABEL, language_model_score, score


@dataclass(frozen=True)
class TrivialPredictor:
    description: str  # e.g. "always predicting 'entailment'"
    metrics: dict[str, float]  # what score() gives it on the labels it was built for
    metric: str  # the task's primary metric, the one to beat

    def not_beaten_by(self, metrics: dict[str, float]) -> str | None:
        """What a model with these metrics is no better than, in words; None when it beats the trivial predictor."""
        if metrics["error"] < self.metrics["error"]:  # error, not the metric: lower is better for every task
            return None
        return f"{self.description} ({self.metric.replace('_', ' ')} {self.metrics[self.metric]:.4f})"


def trivial_predictor(task: TaskSpec, labels: np.ndarray) -> TrivialPredictor:
    """The constant prediction that scores best on `labels` (a class for classification, their mean for regression)."""
    labels = np.asarray(labels)
    if task.causal_lm:
        targets = labels[:, 1:][labels[:, 1:] != IGNORED_LABEL]
        counts = np.unique(targets, return_counts=True)[1]
        nll = -(counts * np.log(counts / counts.sum())).sum()
        return TrivialPredictor(
            "the unigram distribution of the split's tokens", language_model_score(nll, counts.sum()), task.metric
        )
    if task.is_regression:
        constant = float(labels.mean())
        return TrivialPredictor(
            f"always predicting {constant:.3g}", score(task, np.full(len(labels), constant), labels), task.metric
        )
    candidates = [(score(task, np.full(len(labels), label), labels), label) for label in range(task.num_labels)]
    metrics, best = max(candidates, key=lambda item: item[0][task.metric])
    name = task.label_names[best] if task.label_names else str(best)
    return TrivialPredictor(f"always predicting {name!r}", metrics, task.metric)
