"""The searchers, by name: each a class with keyword arguments, over real library classes.

Searchers decide *what* sub-network to evaluate next; they never know where a trial runs. Each
one wraps Syne Tune 0.16 schedulers and searchers, Optuna's NSGA-II or nas-tune's local search
behind the ask/tell `Searcher` interface (`ask_tell.py`), is reproducible from its seed and
suggests its `initial_configs` first, in order. `SEARCHERS` maps the names the CLI takes to the
classes, so a benchmark can loop over it; `multi_fidelity` says whether a searcher varies the
fraction of the validation set an evaluation uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from syne_tune.config_space import Domain

from nas_tune.errors import UserError
from nas_tune.search.ask_tell import Searcher, SingleFidelitySearcher
from nas_tune.search.local_search import LocalSearch
from nas_tune.search.moasha import Fidelity, MOASHASearcher
from nas_tune.search.nsga2 import NSGA2
from nas_tune.search.seeded import SeededEHVI, SeededMOREA, SeededRandomSearcher
from nas_tune.search_space import Config, SearchSpace
from nas_tune.settings import SEARCHER_NAMES

__all__ = ["SEARCHERS", "Searcher", "make_searcher", "start_searcher"]

# Measured with 10 observations: 3-6 s per suggestion at 200 binary dims, 10-30 s at 500.
EHVI_MAX_DIMS = 200


class RandomSearcher(SingleFidelitySearcher):
    """Uniformly random configs: what every other searcher has to beat."""

    name: ClassVar[str] = "random"

    def __init__(
        self, config_space: Config, objectives: list[str], *, seed: int = 0, initial_configs: Sequence[Config] = ()
    ) -> None:
        super().__init__(SeededRandomSearcher(config_space, list(initial_configs), random_seed=seed), objectives, seed)


class MOREASearcher(SingleFidelitySearcher):
    """Multi-objective regularized evolution; a population of 20 starts evolving within the paper's
    budget of 100 evaluations (Syne Tune's default of 100 would not)."""

    name: ClassVar[str] = "morea"

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        *,
        seed: int = 0,
        initial_configs: Sequence[Config] = (),
        population_size: int = 20,
        sample_size: int = 5,
    ) -> None:
        searcher = SeededMOREA(
            config_space,
            points_to_evaluate=list(initial_configs),
            population_size=population_size,
            sample_size=sample_size,
            random_seed=seed,
        )
        super().__init__(searcher, objectives, seed)


class EHVISearcher(SingleFidelitySearcher):
    """Bayesian optimisation with BoTorch's expected hypervolume improvement (a GP per objective)."""

    name: ClassVar[str] = "ehvi"

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        *,
        seed: int = 0,
        initial_configs: Sequence[Config] = (),
        num_init_random: int = 3,
        num_raw_samples: int = 200,
        num_restarts: int = 20,
        mc_samples: int = 128,
        max_num_observations: int | None = 200,
        noise_level: float = 1e-6,
    ) -> None:
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
        searcher = SeededEHVI(
            config_space,
            points_to_evaluate=list(initial_configs),
            num_init_random=num_init_random,
            num_raw_samples=num_raw_samples,
            num_restarts=num_restarts,
            mc_samples=mc_samples,
            max_num_observations=max_num_observations,
            noise_level=noise_level,
            random_seed=seed,
        )
        super().__init__(searcher, objectives, seed)


class NSGA2Searcher(SingleFidelitySearcher):
    """NSGA-II (Optuna's sampler), the classic multi-objective genetic algorithm."""

    name: ClassVar[str] = "nsga2"

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        *,
        seed: int = 0,
        initial_configs: Sequence[Config] = (),
        population_size: int = 20,
    ) -> None:
        searcher = NSGA2(
            config_space,
            num_objectives=len(objectives),
            points_to_evaluate=list(initial_configs),
            random_seed=seed,
            population_size=population_size,
        )
        super().__init__(searcher, objectives, seed)


class LocalSearcher(SingleFidelitySearcher):
    """Random neighbours of the current Pareto set: the paper's recommendation for weight sharing."""

    name: ClassVar[str] = "local_search"

    def __init__(
        self,
        config_space: Config,
        objectives: list[str],
        *,
        seed: int = 0,
        initial_configs: Sequence[Config] = (),
        num_changes: int = 1,
        step_fraction: float = 1.0,
        max_tries: int = 20,
    ) -> None:
        searcher = LocalSearch(
            config_space,
            points_to_evaluate=list(initial_configs),
            random_seed=seed,
            num_changes=num_changes,
            step_fraction=step_fraction,
            max_tries=max_tries,
        )
        super().__init__(searcher, objectives, seed)


SEARCHERS: dict[str, type[Searcher]] = {
    cls.name: cls for cls in (RandomSearcher, MOREASearcher, EHVISearcher, NSGA2Searcher, LocalSearcher, MOASHASearcher)
}
assert tuple(SEARCHERS) == SEARCHER_NAMES, (
    "nas_tune.settings.SEARCHER_NAMES lists every searcher, for the fast command line"
)


def searcher_class(name: str) -> type[Searcher]:
    if name not in SEARCHERS:
        raise UserError(f"Unknown searcher {name!r}; choose one of: {', '.join(sorted(SEARCHERS))}.")
    return SEARCHERS[name]


def _check_initial_configs(initial_configs: list[Config], config_space: Config) -> None:
    for config in initial_configs:
        unknown = sorted(set(config) - set(config_space))
        invalid = sorted(
            name
            for name, domain in config_space.items()
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
    initial_configs: Sequence[Config] = (),
    max_fidelity: float = 1.0,
    min_fidelity: float = 0.1,
    fidelity_key: str = "fidelity",
    **options: Any,
) -> Searcher:
    """The searcher called `name`; `initial_configs` are suggested first, in order.

    All objectives are minimised. `options` are the class's own keyword arguments (e.g.
    `population_size` for morea and nsga2, `num_changes` for local_search, `reduction_factor` for
    moasha); the fidelity range only matters to a multi-fidelity searcher. To resume a search, build
    the same searcher and let the driver replay the stored trials through it.
    """
    cls = searcher_class(name)
    if not objectives:
        raise UserError("No objectives were given; name at least one, e.g. ['error', 'params'].")
    initial = [dict(config) for config in initial_configs]
    _check_initial_configs(initial, config_space)
    fixed: dict[str, Any] = {"seed": seed, "initial_configs": initial}
    if cls.multi_fidelity:
        fixed["fidelity"] = Fidelity(fidelity_key, min_fidelity, max_fidelity)
    allowed = set(inspect.signature(cls).parameters) - {"config_space", "objectives", *fixed}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UserError(f"Unknown searcher option(s) {unknown}; this searcher takes: {sorted(allowed)}.")
    return cls(config_space, list(objectives), **fixed, **options)


def start_searcher(name: str, space: SearchSpace, objectives: list[str], *, seed: int) -> Searcher:
    """The searcher of a new or resumed run, starting from the largest and the smallest sub-network.

    A resumed run gets the same searcher: the driver replays the stored trials through it, so its
    random draws go on where the killed run's stopped instead of repeating them.
    """
    return make_searcher(
        name, space.config_space(), objectives, seed=seed, initial_configs=[space.largest(), space.smallest()]
    )
