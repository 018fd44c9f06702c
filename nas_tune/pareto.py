"""Pareto fronts and hypervolume for minimisation problems with any number of objectives.

Every objective is minimised. Rows containing NaN (failed trials) are never on a front and
contribute no hypervolume, so callers can pass raw result tables without filtering them first.

The hypervolume of a run uses the reference point (1, ..., 1) on objectives clipped to [0, 1]
(`normalise_objectives`): error is 1 - metric, params the fraction of the prunable layer parameters
kept and latency the fraction of the full model's seconds per forward (which can exceed 1 for a slow
sub-network; it then adds no volume). The same normalisation and reference point for every searcher
and run makes hypervolume numbers compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nas_tune.errors import UserError


def _as_points(points: np.ndarray) -> np.ndarray:
    """Coerce to a float [N, M] array; an empty input of any shape becomes [0, M or 0]."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return array.reshape(0, array.shape[-1] if array.ndim == 2 else 0)
    if array.ndim != 2:
        raise ValueError(f"points must be a 2-D [N, M] array, got shape {array.shape}")
    return array


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean [N] mask of the non-dominated rows of an [N, M] array (all objectives minimised).

    A row is dominated if another row is <= in every objective and < in at least one. Of several
    exact duplicates of a front point only the first occurrence is kept, so the front never
    double-counts a configuration. Rows with any NaN are never on the front.
    """
    array = _as_points(points)
    mask = np.zeros(len(array), dtype=bool)
    finite = np.flatnonzero(~np.isnan(array).any(axis=1))
    if len(finite) == 0:
        return mask
    # A stable lexicographic sort puts every dominator (and every earlier duplicate) before the
    # points it dominates, so each point only needs checking against the front built so far.
    order = finite[np.lexsort(array[finite].T[::-1])]
    front: list[np.ndarray] = []
    for index in order:
        point = array[index]
        if front and (np.asarray(front) <= point).all(axis=1).any():
            continue
        front.append(point)
        mask[index] = True
    return mask


def _checked_columns(frame: pd.DataFrame, objectives: Sequence[str]) -> list[str]:
    columns = list(objectives)
    if not columns:
        raise UserError("No objectives were given; name at least one objective column, e.g. 'error'.")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise UserError(
            f"Objective column(s) {missing} are not in the results (columns: {list(frame.columns)}); "
            "choose objectives among those columns."
        )
    return columns


def pareto_front(frame: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Non-dominated rows of `frame`, sorted by objectives[1] then objectives[0] (the reading order
    of an error-vs-params plot). Rows with a NaN objective are ignored; the original index is kept
    so rows can be traced back to their trials."""
    columns = _checked_columns(frame, objectives)
    values = frame[columns].to_numpy(dtype=float)
    front = frame[pareto_mask(values)]
    sort_by = [columns[1], columns[0], *columns[2:]] if len(columns) > 1 else columns
    return front.sort_values(sort_by, kind="stable")


def normalise_objectives(frame: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """The [N, M] objective array clipped to [0, 1] (see the module docstring); NaN stays NaN."""
    columns = _checked_columns(frame, objectives)
    return np.clip(frame[columns].to_numpy(dtype=float), 0.0, 1.0)


def _reference(array: np.ndarray, reference: Sequence[float] | None) -> np.ndarray:
    if reference is None:
        return np.ones(array.shape[1])
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (array.shape[1],):
        raise ValueError(f"reference has shape {ref.shape} but points have {array.shape[1]} objectives")
    return ref


def _inside(array: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Rows that dominate some volume: finite and strictly better than the reference everywhere."""
    return np.isfinite(array).all(axis=1) & (array < ref).all(axis=1)


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact dominated volume of points that all lie strictly inside the reference box.

    2-D is a sort-and-sweep with a running minimum (dominated points fall out naturally); higher
    dimensions slice along the last objective (HSO): between consecutive levels the dominated
    region is the (M-1)-D volume of the points already passed, times the slab depth.
    """
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    if points.shape[1] == 2:
        best = np.minimum.accumulate(points[:, 0])
        depth = np.diff(np.append(points[:, 1], ref[1]))
        return float(np.sum((ref[0] - best) * depth))
    levels = np.append(points[:, -1], ref[-1])
    total = 0.0
    for k in range(len(points)):
        depth = levels[k + 1] - levels[k]
        if depth > 0:
            total += depth * _volume(points[: k + 1, :-1], ref[:-1])
    return total


def hypervolume(points: np.ndarray, reference: Sequence[float] | None = None) -> float:
    """Exact volume dominated by `points` and bounded by `reference` (default all ones).

    Points at or beyond the reference in any objective, and NaN rows, contribute nothing.
    """
    array = _as_points(points)
    if len(array) == 0:
        return 0.0
    ref = _reference(array, reference)
    array = array[_inside(array, ref)]
    return _volume(array[pareto_mask(array)], ref)


def hypervolume_trace(points: np.ndarray, reference: Sequence[float] | None = None) -> np.ndarray:
    """Hypervolume of the first k points for k = 1..N (best-so-far curve of a search).

    Incremental: a new point adds its exclusive contribution (its own box minus the part already
    dominated by the current front), so each step costs one small volume of the front, not a
    recomputation over all points seen.
    """
    array = _as_points(points)
    trace = np.zeros(len(array))
    if len(array) == 0:
        return trace
    ref = _reference(array, reference)
    inside = _inside(array, ref)
    front = np.empty((0, array.shape[1]))
    total = 0.0
    for k, point in enumerate(array):
        if inside[k] and not (front <= point).all(axis=1).any():
            # The front clipped to the new point's box; most clipped points dominate each other.
            limited = np.maximum(front, point)
            total += float(np.prod(ref - point)) - _volume(limited[pareto_mask(limited)], ref)
            front = np.vstack([front[~(point <= front).all(axis=1)], point])
        trace[k] = total
    return trace


def range_hypervolume(points: np.ndarray, lower: Sequence[float]) -> float:
    """The share of the box [lower, 1] (per objective) that `points` dominate.

    With lower = (0, 0.2) for (error, params), a front that reaches tiny models at chance level gains
    nothing for the region below 20 % of the parameters: a point there counts as if it sat at 20 %.
    Points are first clipped to [0, 1] like every nas-tune objective.
    """
    array = np.clip(_as_points(points), 0.0, 1.0)
    low = _reference(array, lower) if len(array) else np.asarray(lower, dtype=float)
    if ((low < 0) | (low >= 1)).any():
        raise ValueError(f"lower bounds must lie in [0, 1), got {list(low)}")
    if len(array) == 0:
        return 0.0
    return hypervolume(np.maximum(array, low)) / float(np.prod(1.0 - low))
