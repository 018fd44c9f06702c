"""Objectives of the search, declared once: what each one means, how it is computed, whether it is bounded.

Every objective is minimised. The CLI's `--objectives`, the trial function of a search and the baselines'
scorer all read `OBJECTIVES`; a new objective is one more entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from nas_tune.errors import UserError
from nas_tune.evaluate import EvaluationResult, Evaluator, LatencySettings
from nas_tune.metrics.latency import measure_latency
from nas_tune.search_space import Config


@dataclass(frozen=True)
class LatencyReference:
    """The full model's seconds per forward, and the resolved settings every trial compared with it is timed under."""

    settings: LatencySettings
    seconds: float


def time_reference(evaluator: Evaluator, latency: LatencySettings | None = None) -> LatencyReference:
    settings = evaluator.latency_settings(latency or LatencySettings())
    return LatencyReference(settings, measure_latency(evaluator.model, **asdict(settings)))


@dataclass(frozen=True)
class Objective:
    name: str
    meaning: str
    bounded: bool  # True: in [0, 1] by construction; False: may exceed 1 (the hypervolume clips it, rows keep it)
    value: Callable[[EvaluationResult, LatencyReference | None], float]
    timed: bool = False  # needs a latency measurement (and the full model's as the reference)
    direction: str = "min"


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(
            "error",
            "1 - the task's primary metric on the validation split (above 1 for a negative correlation)",
            bounded=False,
            value=lambda result, _: result.error,
        ),
        Objective(
            "params",
            "fraction of the super-network's prunable layer parameters kept",
            bounded=True,
            value=lambda result, _: result.layer_fraction,
        ),
        Objective(
            "latency",
            "seconds per forward as a fraction of the full model's, timed alike (above 1 when slower)",
            bounded=False,
            timed=True,
            value=lambda result, reference: result.latency_seconds / reference.seconds,
        ),
    )
}


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise UserError(
            f"--objectives must list two or three distinct names from {', '.join(OBJECTIVES)} (got {','.join(names)})."
        )
    return names


def is_timed(objectives: list[str]) -> bool:
    return any(OBJECTIVES[name].timed for name in objectives)


def objective_metrics(result: EvaluationResult, reference: LatencyReference | None) -> dict[str, float]:
    """The row a searcher and the results store see: every measurement plus each objective it allows."""
    metrics = result.objectives()
    for objective in OBJECTIVES.values():
        if not objective.timed or (reference is not None and result.latency_seconds is not None):
            metrics[objective.name] = objective.value(result, reference)
    return metrics


class TrialFunction:
    """Evaluate a config on the worker's shared evaluator; a timed objective times the full model first, alike."""

    def __init__(self, evaluator: Evaluator, objectives: list[str], latency: LatencySettings | None = None):
        self.evaluator = evaluator
        self.reference = time_reference(evaluator, latency) if is_timed(objectives) else None

    def __call__(self, config: Config, fidelity: float = 1.0) -> dict[str, float]:
        timing = self.reference.settings if self.reference else None
        return objective_metrics(self.evaluator.evaluate(config, fidelity=fidelity, latency=timing), self.reference)
