"""The searcher interface of the search driver, and a Syne Tune scheduler behind it.

The search driver may ask for several configs before any result arrives and report results in
any order, so the adapter here does the Trial bookkeeping that Syne Tune's `Tuner` would
otherwise do. A result for a config this searcher never suggested is history (a resumed search
whose replay fell out of step): the searcher learns from it like from its own trials, and an
initial config found there is not suggested again.
"""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime
from typing import Any, ClassVar, Protocol

from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import remove_constant_and_cast
from syne_tune.optimizer.scheduler import TrialScheduler
from syne_tune.optimizer.schedulers.searchers.searcher import BaseSearcher
from syne_tune.optimizer.schedulers.single_fidelity_scheduler import SingleFidelityScheduler

from nas_tune.search_space import Config, config_key


class Searcher(Protocol):
    """Ask/tell: `suggest` the next config, then report its result (all objectives minimised).

    A multi-fidelity searcher puts the fraction of the validation set to use into every
    suggestion (under its fidelity key) and expects it back in every result.
    """

    multi_fidelity: ClassVar[bool]

    def suggest(self) -> Config | None: ...

    def on_trial_complete(self, config: Config, result: dict[str, float]) -> None: ...

    def on_trial_failed(self, config: Config) -> None: ...


class Pending:
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


class SyneTuneSearcher:
    """A Syne Tune scheduler behind the `Searcher` interface; `searcher` holds the initial configs.

    Trial ids count trials (suggested or replayed) from 0, the convention Syne Tune's Tuner and
    its EHVI searcher (and Optuna's trial numbers) follow. A replayed failure creates no trial.
    """

    multi_fidelity: ClassVar[bool] = False

    def __init__(self, scheduler: TrialScheduler, searcher: BaseSearcher) -> None:
        self.scheduler = scheduler
        self._searcher = searcher
        self._pending = Pending()
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


class SingleFidelitySearcher(SyneTuneSearcher):
    """A Syne Tune searcher run by `SingleFidelityScheduler`: every config is evaluated once, in full."""

    def __init__(self, searcher: BaseSearcher, objectives: list[str], seed: int) -> None:
        scheduler = SingleFidelityScheduler(
            searcher.config_space, metrics=objectives, do_minimize=True, searcher=searcher, random_seed=seed
        )
        super().__init__(scheduler, searcher)
