"""Searchers decide *what* sub-network to evaluate next; they never know where a trial runs.

One small ask/tell interface (`Searcher`) over real library classes: Syne Tune 0.16 schedulers
and searchers, and Optuna's NSGA-II. The search driver may ask for several configs before any
result arrives and report results in any order, so the adapters here do the Trial bookkeeping
that Syne Tune's `Tuner` would otherwise do. A result for a config this searcher never suggested
is replayed history (a resumed search): the searcher learns from it like from its own trials,
and an initial config found there is not suggested again. Every searcher is reproducible from its seed: where
Syne Tune 0.16 samples from numpy's global RNG, a small subclass samples from a seeded one.
"""

from __future__ import annotations

import inspect
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

import numpy as np
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import Domain, postprocess_config, remove_constant_and_cast
from syne_tune.optimizer.scheduler import SchedulerDecision, TrialScheduler
from syne_tune.optimizer.schedulers.multiobjective import MultiObjectiveRegularizedEvolution
from syne_tune.optimizer.schedulers.multiobjective.expected_hyper_volume_improvement import (
    ExpectedHyperVolumeImprovement,
)
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.searchers.random_searcher import MultiObjectiveRandomSearcher
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nas_tune.errors import UserError
from nas_tune.settings import SEARCHER_NAMES

Config = dict[str, Any]

# Measured with 10 observations: 3-6 s per suggestion at 200 binary dims, 10-30 s at 500.
EHVI_MAX_DIMS = 200


class Searcher(Protocol):
    """Ask/tell: `suggest` the next config, then report its result (all objectives minimised)."""

    def suggest(self) -> Config | None: ...

    def on_trial_complete(self, config: Config, result: dict[str, float]) -> None: ...

    def on_trial_failed(self, config: Config) -> None: ...


@dataclass(frozen=True)
class Fidelity:
    """Fraction of the validation set an evaluation uses; only multi-fidelity searchers vary it."""

    key: str
    min: float
    max: float


def config_key(config: Config) -> str:
    """Canonical text of a config, so one that went through JSON still finds its trial."""
    return json.dumps(config, sort_keys=True)


def sample_config(config_space: Config, rng: np.random.RandomState) -> Config:
    """A uniformly random config drawn from `rng` (not from numpy's global RNG)."""
    return {k: v.sample(random_state=rng) if isinstance(v, Domain) else v for k, v in config_space.items()}


def by_domain_type(registry: dict[type, Any], name: str, domain: Domain, searcher: str) -> Any:
    """The registry entry for the domain's class or its nearest base class (e.g. ordinal -> choice)."""
    for cls in type(domain).__mro__:
        if cls in registry:
            return registry[cls]
    kinds = ", ".join(sorted(cls.__name__ for cls in registry))
    raise UserError(
        f"{searcher} cannot search hyper-parameter {name!r} of type {type(domain).__name__}; "
        f"use one of: {kinds}."
    )


class _Pending:
    """Trials awaiting a result, found by config; first-in first-out among identical configs."""

    def __init__(self) -> None:
        self._by_key: dict[str, deque] = defaultdict(deque)

    def __contains__(self, config: Config) -> bool:
        return config_key(config) in self._by_key

    def add(self, config: Config, item: Any) -> None:
        self._by_key[config_key(config)].append(item)

    def pop(self, config: Config) -> Any:
        key = config_key(config)
        item = self._by_key[key].popleft()
        if not self._by_key[key]:
            del self._by_key[key]
        return item


class _SeededRandomSearcher(MultiObjectiveRandomSearcher):
    """Multi-objective random search drawing from its own seeded RNG."""

    def __init__(
        self, config_space: Config, points_to_evaluate: list[Config] | None = None, random_seed: int | None = None
    ) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, random_seed=random_seed)
        self._rng = np.random.RandomState(self.random_seed)

    def suggest(self) -> Config:
        config = self._next_points_to_evaluate()
        return sample_config(self.config_space, self._rng) if config is None else config


class _SeededMOREA(MultiObjectiveRegularizedEvolution):
    """MOREA whose random initial population comes from its seeded RNG (mutations already do)."""

    def suggest(self, **kwargs: Any) -> Config:
        if self.points_to_evaluate or len(self.population) >= self.population_size:
            return super().suggest()
        return sample_config(self.config_space, self.random_state)


class _SeededEHVI(ExpectedHyperVolumeImprovement):
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


class SyneTuneSearcher:
    """A Syne Tune scheduler behind the `Searcher` interface; `searcher` holds the initial configs.

    Trial ids count trials (suggested or replayed) from 0, the convention Syne Tune's Tuner and
    its EHVI searcher (and Optuna's trial numbers) follow. A replayed failure creates no trial.
    """

    def __init__(self, scheduler: TrialScheduler, searcher: BaseSearcher) -> None:
        self.scheduler = scheduler
        self._searcher = searcher
        self._pending = _Pending()
        self._num_trials = 0

    def _drop_initial(self, config: Config) -> None:
        """An initial config already evaluated in replayed history is not suggested again."""
        space = self._searcher.config_space
        done = remove_constant_and_cast(config, space)
        self._searcher.points_to_evaluate = [
            p for p in self._searcher.points_to_evaluate if remove_constant_and_cast(p, space) != done
        ]

    def _add_trial(self, config: Config) -> Trial:
        trial = Trial(trial_id=self._num_trials, config=config, creation_time=datetime.now())
        self._num_trials += 1
        self.scheduler.on_trial_add(trial)
        return trial

    def suggest(self) -> Config | None:
        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        trial = self._add_trial(suggestion.config)
        self._pending.add(trial.config, trial)
        return dict(trial.config)

    def on_trial_complete(self, config: Config, result: dict[str, float]) -> None:
        if config in self._pending:
            trial = self._pending.pop(config)
        else:
            self._drop_initial(config)
            trial = self._add_trial(config)
        self.scheduler.on_trial_complete(trial, result)

    def on_trial_failed(self, config: Config) -> None:
        if config in self._pending:
            self.scheduler.on_trial_error(self._pending.pop(config))
        else:
            self._drop_initial(config)


class MOASHASearcher(SyneTuneSearcher):
    """MO-ASHA (Syne Tune's `MOASHA`) in ask/tell form; the fidelity is a validation-set fraction.

    Syne Tune's MOASHA is ASHA's stopping variant: a trial climbs the rungs 1, rf, rf**2, ... of
    a resource level and at each rung MOASHA decides whether it continues. Here the top rung R is
    the largest power of the reduction factor rf with R <= max / min, and level r means one
    evaluation on the fraction `max * r / R` of the validation data (defaults: 1/9, 1/3, 1), sent
    under `fidelity.key` in every suggestion. New trials start at level 1. When a result
    arrives, MOASHA ranks it (non-dominated sort) against the results recorded at its rung so
    far: if it is among the best 1/rf (or the first there), the same config is queued again at
    the next rung, and queued promotions are suggested before any new config. Results are
    matched to their trial by the config without the fidelity key and recorded at the level
    that was asked for, so the driver may report the fraction it actually used. A replayed
    result is recorded at the rung nearest its fidelity, for the trial queued for that
    promotion if there is one, else for a new trial.
    """

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        seed: int,
        initial_configs: list[Config],
        fidelity: Fidelity,
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
        super().__init__(scheduler, _SeededRandomSearcher(config_space, initial_configs, random_seed=seed))
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


def _construct(cls: type, options: dict[str, Any], **fixed: Any) -> Any:
    """`cls(**fixed, **options)`, with a clear error for an option `cls` does not take."""
    allowed = set(inspect.signature(cls).parameters) - set(fixed)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UserError(f"Unknown searcher option(s) {unknown}; this searcher takes: {sorted(allowed)}.")
    return cls(**fixed, **options)


def _scheduled(searcher: BaseSearcher, config_space: Config, objectives: list[str], seed: int) -> Searcher:
    scheduler = SingleFidelityScheduler(
        config_space, metrics=objectives, do_minimize=True, searcher=searcher, random_seed=seed
    )
    return SyneTuneSearcher(scheduler, searcher)


def _single_fidelity(searcher_cls: type, **defaults: Any) -> Callable[..., Searcher]:
    """Registry entry: a Syne Tune searcher class run by `SingleFidelityScheduler`."""

    def make(config_space, objectives, seed, initial_configs, fidelity, options) -> Searcher:
        searcher = _construct(
            searcher_cls,
            {**defaults, **options},
            config_space=config_space,
            points_to_evaluate=initial_configs,
            random_seed=seed,
        )
        return _scheduled(searcher, config_space, objectives, seed)

    return make


def _local_search(config_space, objectives, seed, initial_configs, fidelity, options) -> Searcher:
    from nas_tune.search.local_search import LocalSearch  # imports this module

    return _single_fidelity(LocalSearch)(config_space, objectives, seed, initial_configs, fidelity, options)


def _nsga2(config_space, objectives, seed, initial_configs, fidelity, options) -> Searcher:
    from nas_tune.search.nsga2 import NSGA2  # imports this module

    searcher = _construct(
        NSGA2,
        options,
        config_space=config_space,
        num_objectives=len(objectives),
        points_to_evaluate=initial_configs,
        random_seed=seed,
    )
    return _scheduled(searcher, config_space, objectives, seed)


def _ehvi(config_space, objectives, seed, initial_configs, fidelity, options) -> Searcher:
    dims = sum(isinstance(domain, Domain) for domain in config_space.values())
    if dims > EHVI_MAX_DIMS:
        raise UserError(
            f"ehvi does not scale to a space with {dims} hyper-parameters (at most {EHVI_MAX_DIMS}, so not "
            "the `large` space); use local_search, morea, nsga2 or random."
        )
    try:
        from botorch.acquisition.multi_objective import logei
    except ImportError:
        raise UserError("ehvi needs BoTorch; install it with `pip install botorch`.") from None
    # BoTorch 0.18 JIT-compiles a C++ kernel on the first qLogEHVI (> 9 min on 2 cores; a killed
    # compile leaves a lock that hangs later runs). Marking the load as attempted keeps the
    # pure-PyTorch path, about 1-2 s per suggestion.
    logei._load_attempted = True
    # noise_level 1e-6: gpytorch rounds smaller noise up to it anyway, with a warning per model.
    return _single_fidelity(_SeededEHVI, noise_level=1e-6)(
        config_space, objectives, seed, initial_configs, fidelity, options
    )


def _moasha(config_space, objectives, seed, initial_configs, fidelity, options) -> Searcher:
    return _construct(
        MOASHASearcher,
        options,
        config_space=config_space,
        objectives=objectives,
        seed=seed,
        initial_configs=initial_configs,
        fidelity=fidelity,
    )


# Called as factory(config_space, objectives, seed, initial_configs, fidelity, options).
# Population sizes of 20 let evolution start within the paper's budget of 100 evaluations.
SEARCHERS: dict[str, Callable[..., Searcher]] = {
    "random": _single_fidelity(_SeededRandomSearcher),
    "morea": _single_fidelity(_SeededMOREA, population_size=20, sample_size=5),
    "ehvi": _ehvi,
    "nsga2": _nsga2,
    "local_search": _local_search,
    "moasha": _moasha,
}
assert tuple(SEARCHERS) == SEARCHER_NAMES, "nas_tune.settings.SEARCHER_NAMES lists every searcher, for the fast command line"


def _check_initial_configs(initial_configs: list[Config], config_space: Config) -> None:
    for config in initial_configs:
        unknown = sorted(set(config) - set(config_space))
        invalid = sorted(
            name for name, domain in config_space.items()
            if isinstance(domain, Domain) and (name not in config or not domain.is_valid(config[name]))
        )
        if unknown or invalid:
            raise UserError(
                f"Initial config {config} does not fit the search space (unknown keys {unknown}, missing or "
                f"out-of-range values for {invalid}); give a value inside the domain of every hyper-parameter."
            )


def make_searcher(
    name: str,
    config_space: Config,
    objectives: list[str],
    *,
    seed: int = 0,
    initial_configs: list[Config] = (),
    max_fidelity: float = 1.0,
    min_fidelity: float = 0.1,
    fidelity_key: str = "fidelity",
    **options: Any,
) -> Searcher:
    """The searcher called `name`; `initial_configs` are suggested first, in order.

    All objectives are minimised. `options` go to the searcher's class (e.g. `population_size`
    for morea and nsga2, `num_changes` for local_search, `reduction_factor` for moasha). To resume
    a search, replay its results into a searcher with a new seed (e.g. derived from the number of
    stored results): with the old seed, random draws would repeat the first run's configs.
    """
    if name not in SEARCHERS:
        raise UserError(f"Unknown searcher {name!r}; choose one of: {', '.join(sorted(SEARCHERS))}.")
    if not objectives:
        raise UserError("No objectives were given; name at least one, e.g. ['error', 'params'].")
    initial = [dict(config) for config in initial_configs]
    _check_initial_configs(initial, config_space)
    fidelity = Fidelity(fidelity_key, min_fidelity, max_fidelity)
    return SEARCHERS[name](config_space, list(objectives), seed, initial, fidelity, options)
