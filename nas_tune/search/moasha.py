"""MO-ASHA (Syne Tune's `MOASHA`) in ask/tell form; the fidelity is a validation-set fraction."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import postprocess_config
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

from nas_tune.errors import UserError
from nas_tune.search.ask_tell import SyneTuneSearcher
from nas_tune.search.seeded import SeededRandomSearcher
from nas_tune.search_space import Config, config_key


@dataclass(frozen=True)
class Fidelity:
    """Fraction of the validation set an evaluation uses; only multi-fidelity searchers vary it."""

    key: str = "fidelity"
    min: float = 0.1
    max: float = 1.0


class MOASHASearcher(SyneTuneSearcher):
    """Syne Tune's MOASHA, ASHA's stopping variant, asked for configs one at a time.

    A trial climbs the rungs 1, rf, rf**2, ... of a resource level and at each rung MOASHA
    decides whether it continues. Here the top rung R is the largest power of the reduction
    factor rf with R <= max / min, and level r means one evaluation on the fraction
    `max * r / R` of the validation data (defaults: 1/9, 1/3, 1), sent under `fidelity.key` in
    every suggestion. New trials start at level 1. When a result arrives, MOASHA ranks it
    (non-dominated sort) against the results recorded at its rung so far: if it is among the
    best 1/rf (or the first there), the same config is queued again at the next rung, and queued
    promotions are suggested before any new config. Results are matched to their trial by the
    config without the fidelity key and recorded at the level that was asked for, so the driver
    may report the fraction it actually used. A replayed result is recorded at the rung nearest
    its fidelity, for the trial queued for that promotion if there is one, else for a new trial.
    """

    name = "moasha"
    multi_fidelity = True

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        *,
        seed: int = 0,
        initial_configs: Sequence[Config] = (),
        fidelity: Fidelity = Fidelity(),
        reduction_factor: float = 3,
    ) -> None:
        if not 0 < fidelity.min <= fidelity.max <= 1:
            raise UserError(
                f"moasha needs 0 < min_fidelity <= max_fidelity <= 1, got {fidelity.min} and {fidelity.max}."
            )
        if fidelity.key in config_space:
            raise UserError(
                f"The fidelity key {fidelity.key!r} is also a hyper-parameter; choose another fidelity_key."
            )
        if reduction_factor <= 1:
            raise UserError(f"moasha needs reduction_factor > 1, got {reduction_factor}.")
        self._levels = reduction_factor ** int(np.log(fidelity.max / fidelity.min) / np.log(reduction_factor) + 1e-9)
        scheduler = MOASHA(
            config_space,
            metrics=objectives,
            time_attr=fidelity.key,
            max_t=self._levels,
            grace_period=1,
            reduction_factor=reduction_factor,
            random_seed=seed,
        )
        super().__init__(scheduler, SeededRandomSearcher(config_space, list(initial_configs), random_seed=seed))
        self._fidelity = fidelity
        self._ladder = sorted({*(milestone for milestone, _ in scheduler.brackets[0].rungs), self._levels})
        self._promotions: deque[tuple[Trial, float]] = deque()

    def _fraction(self, level: float) -> float:
        return self._fidelity.max * level / self._levels

    def suggest(self) -> Config:
        if self._promotions:
            trial, level = self._promotions.popleft()
        else:
            trial = self._add_trial(postprocess_config(self._searcher.suggest(), self._searcher.config_space))
            level = self._ladder[0]
        self._pending.add(trial.config, (trial, level))
        return {**trial.config, self._fidelity.key: self._fraction(level)}

    def _find(self, config: Config) -> tuple[Trial | None, float]:
        """The trial and level a result belongs to; no trial for a replayed, unqueued config."""
        hyperparameters = {k: v for k, v in config.items() if k != self._fidelity.key}
        if hyperparameters in self._pending:
            return self._pending.pop(hyperparameters)
        self._drop_initial(hyperparameters)
        level = min(self._ladder, key=lambda rung: abs(self._fraction(rung) - config[self._fidelity.key]))
        for index, (trial, queued) in enumerate(self._promotions):
            if queued == level and config_key(trial.config) == config_key(hyperparameters):
                del self._promotions[index]
                return trial, level
        return None, level

    def on_trial_complete(self, config: Config, result: dict[str, float]) -> None:
        trial, level = self._find(config)
        if trial is None:
            trial = self._add_trial({k: v for k, v in config.items() if k != self._fidelity.key})
        decision = self.scheduler.on_trial_result(trial, {**result, self._fidelity.key: level})
        if decision == SchedulerDecision.CONTINUE:  # MOASHA says STOP at the top level
            self._promotions.append((trial, self._ladder[self._ladder.index(level) + 1]))
        else:
            self.scheduler.on_trial_remove(trial)

    def on_trial_failed(self, config: Config) -> None:
        trial, _ = self._find(config)
        if trial is not None:
            self.scheduler.on_trial_remove(trial)
