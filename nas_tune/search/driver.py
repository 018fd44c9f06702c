"""The search driver: asks the searcher for configs, hands them to free workers, stores every result.

Asynchronous: a free worker takes the next suggestion and the searcher learns from each result as it
arrives. Every trial handed to a worker is journalled (`started.jsonl`), so a killed search reruns the
trials that were in flight. The trials finished since the driver last looked are stored with one
group commit (one write, one fsync) and only then *reported*: told to the searcher and counted in
the progress bar. So a SIGKILL at any moment loses no reported trial, and a resumed run neither
loses nor repeats a stored one. Nothing is rewritten per trial: both journals only grow.

A resumed search replays its trials into a searcher started with the run's seed, in trial-id order:
the searcher suggests each stored config again and learns its stored result, so it ends in the state
the killed run had and continues with the same suggestions an uninterrupted run would make (exactly
so with one worker; with several, results arrive in a timing-dependent order anyway). Once a
suggestion differs from the stored trial (another version, another completion order) the rest is
told as history, which the searcher learns from without having suggested it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from nas_tune.errors import UserError
from nas_tune.output_folder import check_output_folder
from nas_tune.pareto import hypervolume, normalise_objectives, pareto_mask
from nas_tune.search.executors import Executor, TrialOutcome, TrialRequest
from nas_tune.search.searchers import Searcher
from nas_tune.search.store import ResultsStore, StartedTrial, TrialRecord
from nas_tune.search_space import Config, config_key
from nas_tune.settings import SearchSettings

PROGRESS_INTERVAL_S = 1.0  # the front statistics in the progress bar are recomputed at most this often


def _front_stats(records: list[TrialRecord], objectives: list[str]) -> tuple[int, float]:
    rows = [r.metrics for r in records if r.status == "completed" and r.fidelity >= 1.0]
    if not rows:
        return 0, 0.0
    points = normalise_objectives(pd.DataFrame(rows), objectives)
    return int(pareto_mask(points).sum()), hypervolume(points)


def outcome_record(outcome: TrialOutcome) -> TrialRecord:
    request = outcome.request
    return TrialRecord(
        trial_id=request.trial_id,
        config=request.config,
        metrics=outcome.metrics or {},
        status="completed" if outcome.metrics is not None else "failed",
        error_message=outcome.error,
        fidelity=request.fidelity,
        worker=outcome.worker,
        start_time=outcome.start_time,
        end_time=outcome.end_time,
    )


class SearchDriver:
    def __init__(
        self,
        store: ResultsStore,
        searcher: Searcher,
        executor: Executor,
        settings: SearchSettings,
        *,
        fidelity_key: str = "fidelity",
        size_of: Callable[[Config], float] | None = None,
        show_progress: bool = True,
    ):
        self.store = store
        self.searcher = searcher
        self.executor = executor
        self.settings = settings
        self.fidelity_key = fidelity_key
        self.size_of = size_of  # cheap size of a config, to skip configs over --max-params before evaluation
        self.show_progress = show_progress

    def _replay_history(self) -> tuple[list[TrialRecord], list[TrialRequest], int]:
        """Bring the searcher to the killed run's state; return the stored results, the trials that were
        running (to run again, under their ids) and the next free trial id."""
        records = self.store.latest_by_trial()
        started = {t.trial_id: t for t in self.store.started()}
        # a kill after a commit leaves a trial both started and stored: it is not run again
        resumed = [TrialRequest(i, t.config, t.fidelity) for i, t in sorted(started.items()) if i not in records]
        running = {r.trial_id: r for r in resumed}
        in_step = True
        for trial_id in sorted({*records, *running}):
            record = records.get(trial_id) or running[trial_id]
            config = self._searcher_config(record.config, record.fidelity)
            in_step = in_step and self._suggests(config)  # a running trial then stays pending, as the searcher's own
            if trial_id in records:
                self._tell(records[trial_id])
        return list(records.values()), resumed, max({*records, *started}, default=-1) + 1

    def _suggests(self, config: Config) -> bool:
        """Whether the searcher's next suggestion is `config` (a replayed trial it suggested the first time)."""
        suggestion = self.searcher.suggest()
        return suggestion is not None and config_key(suggestion) == config_key(config)

    def _tell(self, record: TrialRecord) -> None:
        config = self._searcher_config(record.config, record.fidelity)
        if record.status == "completed":
            self.searcher.on_trial_complete(config, self._result(record.metrics, record.fidelity))
        else:
            self.searcher.on_trial_failed(config)

    def _searcher_config(self, config: Config, fidelity: float) -> Config:
        return {**config, self.fidelity_key: fidelity} if self._multi_fidelity else config

    def _result(self, metrics: dict[str, float], fidelity: float) -> dict[str, float]:
        return {**{k: metrics[k] for k in self.settings.objectives}, self.fidelity_key: fidelity}

    @property
    def _multi_fidelity(self) -> bool:
        return self.searcher.multi_fidelity

    def _next_request(self, trial_id: int) -> TrialRequest | TrialRecord | None:
        """The next config to run, or a record of a config skipped for exceeding --max-params."""
        suggestion = self.searcher.suggest()
        if suggestion is None:
            return None
        config = dict(suggestion)
        fidelity = float(config.pop(self.fidelity_key, 1.0))
        if self.settings.max_params is not None and self.size_of is not None:
            size = self.size_of(config)
            if size > self.settings.max_params:
                now = time.time()
                return TrialRecord(
                    trial_id,
                    config,
                    {"params": size},
                    "failed",
                    f"over --max-params ({size:.3f})",
                    fidelity,
                    "driver",
                    now,
                    now,
                )
        return TrialRequest(trial_id, config, fidelity)

    def run(self) -> pd.DataFrame:
        settings = self.settings
        records, resumed, next_id = self._replay_history()
        evaluated = sum(r.status == "completed" or r.worker != "driver" for r in records)
        start = time.time()
        skipped, exhausted = 0, False
        bar = tqdm(
            total=settings.num_trials,
            initial=min(evaluated, settings.num_trials),
            desc=f"search ({settings.searcher})",
            unit="trial",
            disable=not self.show_progress,
        )
        last_postfix = float("-inf")
        try:
            while True:
                out_of_time = settings.time_budget is not None and time.time() - start > settings.time_budget
                started: list[StartedTrial] = []
                while (
                    self.executor.running < self.executor.num_workers
                    and not out_of_time
                    and not exhausted
                    and evaluated + self.executor.running < settings.num_trials
                ):
                    if resumed:
                        self.executor.submit(resumed.pop(0))  # trials that were running when the search was killed
                        continue
                    request = self._next_request(next_id)
                    if request is None:
                        exhausted = True
                        break
                    next_id += 1
                    if isinstance(request, TrialRecord):
                        self._commit([request], records)
                        skipped += 1
                        exhausted = skipped > 20 * settings.num_trials
                    else:
                        self.executor.submit(request)
                        started.append(StartedTrial(request.trial_id, request.config, request.fidelity))
                self.store.mark_started(started)  # one append per round, before waiting
                if self.executor.running == 0:
                    break
                outcomes = self.executor.wait()
                self._commit([outcome_record(o) for o in outcomes], records)
                evaluated += len(outcomes)
                bar.update(len(outcomes))
                if time.monotonic() - last_postfix >= PROGRESS_INTERVAL_S:
                    last_postfix = time.monotonic()
                    self._show_front(bar, records)
            self._show_front(bar, records)
        finally:
            bar.close()
        self.store.write_csv()
        return self.store.to_frame()

    def _show_front(self, bar: tqdm, records: list[TrialRecord]) -> None:
        """Front statistics only feed the progress bar: O(trials) each, so they are not recomputed per trial."""
        if self.show_progress:
            size, volume = _front_stats(records, self.settings.objectives)
            bar.set_postfix(pareto=size, hv=f"{volume:.4f}", failed=sum(r.status == "failed" for r in records))

    def _commit(self, new: list[TrialRecord], records: list[TrialRecord]) -> None:
        """Store `new` with one fsync, then report them: nothing is reported before it is durable."""
        self.store.append_many(new)
        records.extend(new)
        for record in new:
            self._tell(record)


def check_resumable(store: ResultsStore, metadata: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two different searches in one folder; never delete results without --overwrite."""
    stored = store.read_metadata()
    holds_run = stored is not None if resume else stored is not None or store.trials_path.exists()
    check_output_folder(
        store.run_dir, holds_run=holds_run, what="a search or baseline run", resume=resume, overwrite=overwrite
    )
    if resume:
        keys = ("checkpoint", "search_space", "searcher", "objectives", "seed", "max_params")
        mismatch = [k for k in keys if stored.get(k) != metadata.get(k)]
        if mismatch:
            k = mismatch[0]
            raise UserError(
                f"--resume: {store.run_dir} is a different search ({k} was {stored.get(k)!r}, now {metadata.get(k)!r}); use a new --output."
            )
        return
    if holds_run:  # and --overwrite
        for name in (store.trials_path.name, "trials.csv", store.started_path.name, "metadata.json"):
            (store.run_dir / name).unlink(missing_ok=True)
