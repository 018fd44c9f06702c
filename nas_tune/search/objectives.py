"""Objectives of the search: what a worker computes for one config, all as fractions to minimise."""

from __future__ import annotations

from nas_tune.errors import UserError
from nas_tune.evaluate import Evaluator, LatencySettings
from nas_tune.metrics.latency import measure_latency
from nas_tune.search_space import Config

OBJECTIVES = ("error", "params", "latency")


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise UserError(f"--objectives must list two or three distinct names from {', '.join(OBJECTIVES)} (got {','.join(names)}).")
    return names


class TrialFunction:
    """Evaluate a config on the worker's shared evaluator; latency becomes a fraction of the full model's."""

    def __init__(self, evaluator: Evaluator, objectives: list[str], latency: LatencySettings | None = None):
        self.evaluator = evaluator
        self.latency = (latency or LatencySettings()) if "latency" in objectives else None
        self.full_latency = measure_latency(evaluator.model, **vars(self.latency)) if self.latency else None

    def __call__(self, config: Config, fidelity: float = 1.0) -> dict[str, float]:
        result = self.evaluator.evaluate(config, fidelity=fidelity, latency=self.latency)
        metrics = result.objectives()
        if self.latency is not None:
            metrics["latency_seconds"] = result.latency
            metrics["latency"] = min(1.0, result.latency / self.full_latency)
        return metrics
