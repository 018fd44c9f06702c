"""Evaluation of sub-networks against a task split."""

from nas_tune.evaluate.evaluator import (
    EvaluationResult,
    Evaluator,
    LatencySettings,
    language_model_metrics,
    lm_batch_size,
)

__all__ = ["EvaluationResult", "Evaluator", "LatencySettings", "language_model_metrics", "lm_batch_size"]
