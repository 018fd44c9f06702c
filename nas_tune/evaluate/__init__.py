"""Evaluation of sub-networks against a task split."""

from nas_tune.evaluate.evaluator import EvaluationResult, Evaluator, LatencySettings

__all__ = ["EvaluationResult", "Evaluator", "LatencySettings"]
