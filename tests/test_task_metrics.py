"""Task metrics against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from nas_tune.data import GLUE_TASKS, TaskSpec
from nas_tune.metrics.task import score


def logits(classes: list[int], num_labels: int = 2) -> np.ndarray:
    """Logits whose argmax is `classes`."""
    return np.eye(num_labels)[classes] * 3.0 - 1.0


def test_accuracy_from_logits():
    result = score(GLUE_TASKS["rte"], logits([0, 1, 1, 0]), [0, 1, 0, 0])
    assert result == {"accuracy": 0.75, "error": 0.25}


def test_mrpc_f1_and_accuracy():
    # tp = 2, fp = 1, fn = 1 -> f1 = 2*2 / (2*2 + 1 + 1) = 2/3; 3 of 5 right.
    result = score(GLUE_TASKS["mrpc"], logits([1, 0, 0, 1, 1]), np.array([1, 1, 0, 0, 1]))
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["error"] == pytest.approx(1 / 3)
    assert set(result) == {"f1", "accuracy", "error"}


def test_f1_without_positive_predictions_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score(GLUE_TASKS["qqp"], np.array([0, 0, 0]), [1, 0, 1])
    assert result["f1"] == 0.0 and result["error"] == 1.0


def test_cola_matthews_correlation():
    # tp = 1, tn = 2, fp = 0, fn = 1 -> (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3) = 1/sqrt(3).
    result = score(GLUE_TASKS["cola"], torch.tensor(logits([1, 0, 0, 0])), torch.tensor([1, 1, 0, 0]))
    assert result["matthews_correlation"] == pytest.approx(1 / math.sqrt(3))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["error"] == pytest.approx(1 - 1 / math.sqrt(3))


def test_constant_predictions_score_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cola = score(GLUE_TASKS["cola"], logits([1, 1, 1, 1]), [1, 0, 1, 0])
        stsb = score(GLUE_TASKS["stsb"], np.full(4, 2.5), [0.0, 1.0, 2.0, 5.0])
    assert cola["matthews_correlation"] == 0.0 and cola["error"] == 1.0
    assert stsb == {"pearson": 0.0, "spearman": 0.0, "error": 1.0}


def test_stsb_correlations():
    perfect = score(GLUE_TASKS["stsb"], np.array([1.0, 2.0, 3.0, 4.0]), [10.0, 20.0, 30.0, 40.0])
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["error"] == pytest.approx(0.0)
    reversed_ = score(GLUE_TASKS["stsb"], np.array([4.0, 3.0, 2.0, 1.0]), [10.0, 20.0, 30.0, 40.0])
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["error"] == pytest.approx(2.0)
    # Deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): r = 3 / sqrt(2 * 42/9); the ranking is the same -> spearman 1.
    result = score(GLUE_TASKS["stsb"], torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 4.0]))
    assert result["pearson"] == pytest.approx(3 / math.sqrt(2 * 42 / 9))
    assert result["spearman"] == pytest.approx(1.0)


def test_spearman_of_a_known_ranking():
    # Ranks (1,2,3,4,5) vs (2,1,4,3,5): sum d^2 = 4 -> 1 - 6*4 / (5*24) = 0.8.
    result = score(GLUE_TASKS["stsb"], np.array([0.1, 0.2, 0.3, 0.4, 0.5]), [2.0, 1.0, 4.0, 3.0, 5.0])
    assert result["spearman"] == pytest.approx(0.8)


def test_mnli_three_classes_and_class_ids():
    mnli = GLUE_TASKS["mnli"]
    assert score(mnli, logits([0, 1, 2, 2], 3), [0, 1, 2, 1])["accuracy"] == pytest.approx(0.75)
    assert score(mnli, torch.tensor([2, 2, 0]), [2, 1, 0]) == pytest.approx({"accuracy": 2 / 3, "error": 1 / 3})


def test_custom_task_and_bfloat16_logits():
    task = TaskSpec("custom", ("text",), 4, "accuracy", ("a", "b", "c", "d"))
    predictions = torch.tensor(logits([3, 2, 1, 0], 4), dtype=torch.bfloat16)
    assert score(task, predictions, [3, 2, 0, 0])["accuracy"] == pytest.approx(0.75)


def test_regression_single_row_is_zero():
    assert score(GLUE_TASKS["stsb"], np.array([1.0]), [2.0])["spearman"] == 0.0


def test_logits_of_the_wrong_width_are_rejected():
    with pytest.raises(ValueError, match="expected logits with 3 columns for mnli"):
        score(GLUE_TASKS["mnli"], logits([0, 1]), [0, 1])
