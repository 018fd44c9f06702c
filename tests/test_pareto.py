import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume

from nas_tune.errors import UserError
from nas_tune.pareto import (
    hypervolume,
    hypervolume_trace,
    normalise_objectives,
    pareto_front,
    pareto_mask,
)


def _union_volume(points: np.ndarray, reference: np.ndarray) -> float:
    """Independent exact check: inclusion-exclusion over all subsets of the boxes [p, ref]."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(reference - corner, 0, None))
    return total


# --- pareto_mask -------------------------------------------------------------------------------


def test_mask_2d_hand_computed_with_duplicate():
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]])
    assert pareto_mask(points).tolist() == [True, True, False, True, False, False]


def test_mask_ties_in_one_objective_are_dominated():
    assert pareto_mask(np.array([[1, 3], [1, 2], [2, 2]])).tolist() == [False, True, False]


@pytest.mark.parametrize(
    "points, expected",
    [([[1, 3], [3, 1], [1, 3]], [True, True, False]), ([[3, 1], [1, 3], [3, 1], [3, 1]], [True, True, False, False])],
)
def test_mask_keeps_first_occurrence_of_duplicates(points, expected):
    assert pareto_mask(np.array(points)).tolist() == expected


def test_mask_3d_hand_computed():
    points = np.array([[1, 2, 3], [2, 1, 3], [3, 3, 1], [2, 2, 3], [1, 2, 3.5], [3, 3, 3], [0.5, 5, 5]])
    assert pareto_mask(points).tolist() == [True, True, True, False, False, False, True]


def test_mask_single_point_and_empty():
    assert pareto_mask(np.array([[0.3, 0.7, 0.1]])).tolist() == [True]
    for empty in (np.empty((0, 3)), np.array([])):
        mask = pareto_mask(empty)
        assert mask.dtype == bool and mask.shape == (0,)


def test_mask_nan_rows_never_on_front():
    points = np.array([[np.nan, 0.0], [0.5, 0.5], [0.0, np.nan]])
    assert pareto_mask(points).tolist() == [False, True, False]


def test_mask_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(200, 3)).astype(float)  # many ties and duplicates
    expected = []
    for i, p in enumerate(points):
        dominated = ((points <= p).all(1) & (points < p).any(1)).any()
        earlier_duplicate = (points[:i] == p).all(1).any()
        expected.append(not dominated and not earlier_duplicate)
    assert pareto_mask(points).tolist() == expected


# --- pareto_front / normalise ------------------------------------------------------------------


def test_front_ignores_nan_rows_and_sorts_by_second_then_first_objective():
    frame = pd.DataFrame(
        {
            "trial_id": [0, 1, 2, 3, 4, 5],
            "error": [0.1, 0.3, np.nan, 0.2, 0.5, 0.35],
            "params": [0.9, 0.4, 0.0, 0.6, 0.1, 0.4],
        }
    )
    front = pareto_front(frame, ["error", "params"])
    assert front["trial_id"].tolist() == [4, 1, 3, 0]  # trial 2 failed, trial 5 dominated by 1
    assert front.index.tolist() == [4, 1, 3, 0]  # original index kept


def test_front_missing_column_is_user_error():
    with pytest.raises(UserError, match="latency"):
        pareto_front(pd.DataFrame({"error": [0.1]}), ["error", "latency"])


def test_normalise_clips_to_unit_interval_and_keeps_nan():
    frame = pd.DataFrame({"error": [-0.1, 0.5, np.nan], "latency": [1.3, 0.2, 0.4]})
    array = normalise_objectives(frame, ["error", "latency"])
    np.testing.assert_array_equal(array, [[0.0, 1.0], [0.5, 0.2], [np.nan, 0.4]])


# --- hypervolume --------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_botorch_on_random_fronts(dims):
    """botorch maximises, so both the points and the reference are negated for it."""
    rng = np.random.default_rng(100 + dims)
    for size in (1, 5, 40):
        points = rng.uniform(0, 1.2, size=(size, dims))  # some points lie beyond the reference
        reference = rng.uniform(0.8, 1.0, size=dims)
        inside = points[(points < reference).all(axis=1)]
        front = torch.as_tensor(-inside[pareto_mask(inside)], dtype=torch.float64)
        expected = Hypervolume(torch.as_tensor(-reference, dtype=torch.float64)).compute(front) if len(front) else 0.0
        assert hypervolume(points, reference) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert hypervolume_trace(points, reference)[-1] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_hypervolume_2d_hand_computed():
    # Sweep along x: [0.2,0.4) x 0.4 + [0.4,0.7) x 0.7 + [0.7,1) x 0.9 = 0.08 + 0.21 + 0.27
    points = np.array([[0.2, 0.6], [0.4, 0.3], [0.7, 0.1]])
    assert hypervolume(points) == pytest.approx(0.56)
    assert hypervolume(points, reference=[2.0, 1.0]) == pytest.approx(0.56 + 1.0 * 0.9)


def test_hypervolume_3d_hand_computed():
    assert hypervolume(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(0.125)
    # Two boxes of 0.2 each overlapping in the box above (0.5, 0.5, 0.5): 0.2 + 0.2 - 0.125.
    two = np.array([[0.2, 0.5, 0.5], [0.5, 0.2, 0.5]])
    assert hypervolume(two) == pytest.approx(0.275)
    # A third such box: 3 * 0.2 - 3 * 0.125 + 0.125 by inclusion-exclusion.
    three = np.vstack([two, [[0.5, 0.5, 0.2]]])
    assert hypervolume(three) == pytest.approx(0.35)


def test_hypervolume_3d_matches_monte_carlo():
    rng = np.random.default_rng(42)
    points = rng.uniform(0.1, 0.9, size=(25, 3))
    samples = rng.uniform(0, 1, size=(200_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for p in points:
        covered |= (samples >= p).all(1)
    assert hypervolume(points) == pytest.approx(covered.mean(), abs=0.005)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dims):
    rng = np.random.default_rng(dims)
    points = rng.uniform(0, 1, size=(9, dims))
    reference = np.full(dims, 1.0)
    assert hypervolume(points) == pytest.approx(_union_volume(points, reference))


def test_points_outside_reference_and_dominated_points_add_nothing():
    base = np.array([[0.2, 0.6], [0.4, 0.3], [0.7, 0.1]])
    outside = np.array([[1.5, 0.0], [0.0, 1.0], [np.nan, 0.1]])
    dominated = np.array([[0.5, 0.7], [0.4, 0.3]])
    assert hypervolume(np.vstack([base, outside, dominated])) == pytest.approx(0.56)
    assert hypervolume(outside) == 0.0
    assert hypervolume(np.empty((0, 2))) == 0.0


def test_trace_is_incremental_hypervolume():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 1.1, size=(60, 3))  # some beyond the reference
    points[5] = np.nan
    trace = hypervolume_trace(points)
    assert trace.shape == (60,)
    assert np.all(np.diff(trace) >= 0)
    assert trace[-1] == pytest.approx(hypervolume(points))
    for k in (0, 1, 10, 33):
        assert trace[k] == pytest.approx(hypervolume(points[: k + 1]))


def test_trace_2d_hand_computed_and_empty():
    points = np.array([[0.7, 0.1], [0.8, 0.8], [0.2, 0.6], [0.4, 0.3]])
    np.testing.assert_allclose(hypervolume_trace(points), [0.27, 0.27, 0.27 + 0.32 - 0.12, 0.56])
    assert hypervolume_trace(np.empty((0, 2))).shape == (0,)
