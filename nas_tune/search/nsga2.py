"""NSGA-II for nas-tune: Optuna's `NSGAIISampler` behind Syne Tune's searcher interface.

Syne Tune 0.16 dropped its own NSGA-2, so the searcher asks and tells an Optuna study instead and
runs under the same `SingleFidelityScheduler` as the Syne Tune searchers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from syne_tune.config_space import Categorical, Domain, Float, Integer
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher

from nas_tune.search.domains import by_domain_type
from nas_tune.search_space import Config

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise


def _is_log(domain: Domain) -> bool:
    return isinstance(domain.get_sampler(), (Integer._LogUniform, Float._LogUniform))


DISTRIBUTIONS: dict[type, Callable[[Any], BaseDistribution]] = {
    Integer: lambda d: IntDistribution(d.lower, d.upper, log=_is_log(d)),  # randint is inclusive, like Optuna
    Float: lambda d: FloatDistribution(d.lower, d.upper, log=_is_log(d)),
    Categorical: lambda d: CategoricalDistribution(d.categories),
}


class NSGA2(BaseSearcher):
    """NSGA-II over a Syne Tune config space; initial configs are enqueued into the study.

    Syne Tune trial ids count trials from 0, as Optuna numbers its trials, so a trial id finds
    its Optuna trial; a result for an id never asked (replayed history) is added to the study.
    """

    def __init__(
        self,
        config_space: Config,
        num_objectives: int,
        points_to_evaluate: list[Config] | None = None,
        random_seed: int | None = None,
        population_size: int = 20,
    ) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        self._distributions = {
            name: by_domain_type(DISTRIBUTIONS, name, domain, "nsga2")(domain)
            for name, domain in config_space.items()
            if isinstance(domain, Domain)
        }
        sampler = optuna.samplers.NSGAIISampler(seed=self.random_seed, population_size=population_size)
        self._study = optuna.create_study(directions=["minimize"] * num_objectives, sampler=sampler)
        self._asked: dict[int, optuna.Trial] = {}

    def suggest(self, **kwargs: Any) -> Config:
        initial = self._next_points_to_evaluate()
        if initial is not None:
            self._study.enqueue_trial({name: initial[name] for name in self._distributions})
        trial = self._study.ask(self._distributions)
        self._asked[trial.number] = trial
        return trial.params

    def on_trial_complete(self, trial_id: int, config: Config, metrics: list[float]) -> None:
        if trial_id in self._asked:
            self._study.tell(self._asked.pop(trial_id), metrics)
        else:
            params = {name: config[name] for name in self._distributions}
            trial = optuna.trial.create_trial(params=params, distributions=self._distributions, values=metrics)
            self._study.add_trial(trial)

    def on_trial_error(self, trial_id: int) -> None:
        self._study.tell(self._asked.pop(trial_id), state=TrialState.FAIL)
