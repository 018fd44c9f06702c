"""Syne Tune 0.16 searchers made reproducible from their seed, and EHVI's GP data fixed.

Where Syne Tune 0.16 samples random configs from numpy's global RNG, these subclasses sample
from a seeded one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution
from syne_tune.optimizer.schedulers.multiobjective.expected_hyper_volume_improvement import (
    ExpectedHyperVolumeImprovement,
)
from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher

from nas_tune.search_space import Config, sample_config


class SeededRandomSearcher(MultiObjectiveRandomSearcher):
    """Multi-objective random search drawing from its own seeded RNG."""

    def __init__(
        self, config_space: Config, points_to_evaluate: list[Config] | None = None, random_seed: int | None = None
    ) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        self._rng = np.random.RandomState(self.random_seed)

    def suggest(self) -> Config:
        config = self._next_points_to_evaluate()
        return sample_config(self.config_space, self._rng) if config is None else config


class SeededMOREA(MultiObjectiveRegularizedEvolution):
    """MOREA whose random initial population comes from its seeded RNG (mutations already do)."""

    def suggest(self, **kwargs: Any) -> Config:
        if self.points_to_evaluate or len(self.population) >= self.population_size:
            return super().suggest()
        return sample_config(self.config_space, self.random_state)


class SeededEHVI(ExpectedHyperVolumeImprovement):
    """Syne Tune 0.16's EHVI with its random configs seeded and its GP data fixed.

    The library pairs configs (in suggestion order) with objectives (in completion order), which
    mismatches them once results arrive out of order; and it puts BoTorch's reference point at 2
    (maximising -objective), beyond which no objective in [0, 1] ever gets, so every candidate
    has zero hypervolume improvement. Objectives are therefore given in suggestion order and
    min-max normalised to [-3.1, -2.1]: the reference point then lies 10% beyond the worst
    observed value of each objective.
    """

    def _get_random_config(self) -> Config:
        return sample_config(self.config_space, self.random_state)

    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        self.trial_configs.setdefault(trial_id, config)  # a replayed result: the GP needs its config
        super().on_trial_complete(trial_id, config, metrics)

    def objectives(self) -> np.ndarray:
        values = np.array([self.trial_observations[t] for t in self.trial_configs if t in self.trial_observations])
        if len(values) == 0:
            return values
        low, high = values.min(axis=0), values.max(axis=0)
        return (values - low) / np.where(high > low, high - low, 1.0) - 3.1
