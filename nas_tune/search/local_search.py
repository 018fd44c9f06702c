"""Multi-objective local search: the paper's recommended searcher for weight-sharing NAS.

Evaluating a sub-network of a trained super-network is cheap, so it pays to refine the Pareto
front step by step instead of sampling the whole space: start from the initial configs (nas-tune
passes the largest sub-network first), then propose a random neighbour of a random member of the
current Pareto set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from syne_tune.config_space import Categorical, Domain, Integer
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher

from nas_tune.errors import UserError
from nas_tune.pareto import pareto_mask
from nas_tune.search.domains import by_domain_type
from nas_tune.search_space import Config, sample_config


def _nearby_integer(domain: Integer, value: int, rng: np.random.RandomState, step_fraction: float) -> int:
    """Another value at most `step_fraction` of the range away (at least 1), inside the bounds."""
    width = max(1, round(step_fraction * (domain.upper - domain.lower)))
    low, high = max(domain.lower, value - width), min(domain.upper, value + width)
    other = int(rng.randint(low, high))  # one of the high - low values other than `value`
    return other + 1 if other >= value else other


def _other_category(domain: Categorical, value: Any, rng: np.random.RandomState, step_fraction: float) -> Any:
    """Any other choice: choices have no distance, so `step_fraction` does not apply."""
    others = [category for category in domain.categories if category != value]
    return others[rng.randint(len(others))]


NEIGHBOURS: dict[type, Callable[[Any, Any, np.random.RandomState, float], Any]] = {
    Integer: _nearby_integer,
    Categorical: _other_category,
}


class LocalSearch(BaseSearcher):
    """Random neighbours of the current Pareto set, in Syne Tune's searcher interface.

    Until a result arrives, neighbours of the first suggested config are proposed. A neighbour
    changes `num_changes` randomly chosen hyper-parameters: a choice to another value, an integer
    by at most `step_fraction` of its range. The default 1.0 redraws the integer anywhere, as the
    paper's reference code does (`benchmarks/compare_searchers.py` and `benchmarks/exhaustive_front.py`
    compare it with the other searchers at that setting). Up to `max_tries` neighbours are drawn to
    find one not suggested before.
    """

    def __init__(
        self,
        config_space: Config,
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        num_changes: int = 1,
        step_fraction: float = 1.0,
        max_tries: int = 20,
    ) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        if num_changes < 1:
            raise UserError(f"local_search needs num_changes >= 1, got {num_changes}.")
        if not 0 < step_fraction <= 1:
            raise UserError(f"local_search needs 0 < step_fraction <= 1, got {step_fraction}.")
        self._moves = {
            name: by_domain_type(NEIGHBOURS, name, domain, "local_search")
            for name, domain in config_space.items()
            if isinstance(domain, Domain)
        }
        self._names = [name for name in self._moves if len(config_space[name]) > 1]
        if not self._names:
            raise UserError("local_search needs at least one hyper-parameter with more than one value.")
        self._num_changes = min(num_changes, len(self._names))
        self._step_fraction = step_fraction
        self._max_tries = max_tries
        self._rng = np.random.RandomState(self.random_seed)
        self._seen: set[tuple] = set()
        self._start: Config | None = None
        self._completed: list[Config] = []
        self._metrics: list[list[float]] = []

    def _key(self, config: Config) -> tuple:
        return tuple(config[name] for name in self._names)

    def _parent(self) -> Config:
        if not self._metrics:
            return self._start
        front = np.flatnonzero(pareto_mask(np.array(self._metrics)))
        return self._completed[front[self._rng.randint(len(front))]]

    def _neighbour(self, parent: Config) -> Config:
        for _ in range(self._max_tries):
            child = dict(parent)
            for name in self._rng.choice(self._names, size=self._num_changes, replace=False):
                child[name] = self._moves[name](self.config_space[name], child[name], self._rng, self._step_fraction)
            if self._key(child) not in self._seen:
                break
        return child

    def suggest(self, **kwargs: Any) -> Config:
        config = self._next_points_to_evaluate()
        if config is None and self._start is None and not self._completed:
            config = sample_config(self.config_space, self._rng)
        elif config is None:
            config = self._neighbour(self._parent())
        if self._start is None:
            self._start = config
        self._seen.add(self._key(config))
        return config

    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        self._seen.add(self._key(config))  # replayed results were never suggested here
        self._completed.append(config)
        self._metrics.append(metrics)
