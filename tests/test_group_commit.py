"""Group commits of the results store: one fsync per group, nothing rewritten, nothing reported lost on SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import preforked
from syne_tune.config_space import randint

from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import Executor, TrialOutcome
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore, TrialRecord


class InstantWorkers(Executor):
    """Eight workers that evaluate instantly; each wait() returns every running trial: groups of 8 under "load"."""

    num_workers = 8

    def __init__(self, stop_here=lambda moment: None):
        self.pending, self.waits, self.stop_here = [], 0, stop_here

    def submit(self, request):
        self.pending.append(request)

    def wait(self):
        self.waits += 1
        self.stop_here(("wait", self.waits))
        done, self.pending = self.pending, []
        return [
            TrialOutcome(
                r, {"error": r.config["x"] % 997 / 997, "params": r.config["x"] % 991 / 991}, None, "w", 0.0, 1.0
            )
            for r in done
        ]

    @property
    def running(self):
        return len(self.pending)

    def close(self):
        pass


class Reporting:
    """A searcher that prints every result reported to it by this run (not the replayed ones)."""

    multi_fidelity = False

    def __init__(self, inner, replayed: int, stop_here):
        self.inner, self.replayed, self.reported, self.stop_here = inner, replayed, 0, stop_here

    def suggest(self):
        return self.inner.suggest()

    def on_trial_failed(self, config):
        self.inner.on_trial_failed(config)

    def on_trial_complete(self, config, result):
        self.inner.on_trial_complete(config, result)
        if self.replayed:
            self.replayed -= 1
            return
        self.reported += 1
        print(json.dumps(config), flush=True)
        self.stop_here(("tell", self.reported))


def random_search(store: ResultsStore, num_trials: int, stop_here=lambda moment: None) -> None:
    """A real driver and random searcher over a huge space (a repeated config would be a repeated trial)."""
    history = store.latest_by_trial()
    searcher = make_searcher("random", {"x": randint(0, 10**9)}, ["error", "params"], seed=len(history))
    settings = SearchSettings(searcher="random", num_trials=num_trials, workers=InstantWorkers.num_workers)
    SearchDriver(
        store, Reporting(searcher, len(history), stop_here), InstantWorkers(stop_here), settings, show_progress=False
    ).run()


# `tell N` stops after the N-th result the run reported; `wait N` in the N-th wait(), after that round's
# trials were handed out and journalled. Stopping = waiting forever, where the test kills it.
CHILD = textwrap.dedent(
    """
    import sys, threading
    from test_group_commit import random_search
    from nas_tune.search.store import ResultsStore

    run_dir, where, count, num_trials = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def stop_here(moment):
        if moment == (where, count):
            print("blocked", flush=True)
            threading.Event().wait()

    random_search(ResultsStore(run_dir), num_trials, stop_here)
    print("finished", flush=True)
    """
)


def run_child(run_dir: Path, where: str, count: int, num_trials: int) -> tuple[list[dict], bool]:
    """Run the child in a new process until it blocks (then SIGKILL it) or finishes; the configs it reported, and
    whether it was killed."""
    process = preforked.Process(
        [sys.executable, "-c", CHILD, str(run_dir), where, str(count), str(num_trials)],
        {**os.environ, "OMP_NUM_THREADS": "1"},
    )
    reported, killed = [], False
    for line in process.lines():
        if line.strip() == "blocked":
            process.kill()
            killed = True
            break
        if line.strip() != "finished":
            reported.append(json.loads(line))
    output = process.communicate(timeout=600)
    assert process.returncode == (-signal.SIGKILL if killed else 0), output[-3000:]
    return reported, killed


def completed_configs(store: ResultsStore) -> list[dict]:
    return [r.config for r in store.records() if r.status == "completed"]


def test_sigkill_between_commits_loses_no_reported_trial_and_resume_neither_loses_nor_repeats(tmp_path):
    store = ResultsStore(tmp_path)
    reported_first, killed = run_child(tmp_path, "tell", 30, 100)  # killed mid-report of the 4th group of 8
    assert killed and len(reported_first) == 30
    stored = completed_configs(store)
    assert all(config in stored for config in reported_first)
    before = {r.trial_id: r for r in store.records()}

    reported_second, killed = run_child(tmp_path, "wait", 3, 100)  # killed with 8 trials handed out, none committed
    assert killed and len(reported_second) == 16
    stored = completed_configs(store)
    assert all(config in stored for config in reported_first + reported_second)
    in_flight = {t.trial_id for t in store.started()} - {r.trial_id for r in store.records()}
    assert len(in_flight) == 8

    reported_last, killed = run_child(tmp_path, "never", 0, 100)
    assert not killed
    records = store.records()
    assert sorted(r.trial_id for r in records) == list(range(100))  # every trial exactly once, in-flight ones rerun
    assert all(r.status == "completed" for r in records)
    configs = [json.dumps(r.config, sort_keys=True) for r in records]
    assert len(set(configs)) == 100  # no config evaluated twice
    assert all(config in completed_configs(store) for config in reported_first + reported_second + reported_last)
    after = {r.trial_id: r for r in records}
    assert all(after[i] == record for i, record in before.items())  # stored records are never rewritten


def test_a_group_is_one_write_and_one_fsync(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    store = ResultsStore(tmp_path)
    store.append_many([TrialRecord(trial_id=i, config={"x": i}, metrics={"error": i / 10}) for i in range(5)])
    store.append_many([])
    assert synced == [str(store.trials_path)]
    assert [r.trial_id for r in store.records()] == list(range(5))


def test_the_driver_commits_a_group_per_fsync_and_rewrites_nothing(tmp_path, monkeypatch, capsys):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    store = ResultsStore(tmp_path)
    random_search(store, 64)
    assert synced.count(str(store.trials_path)) == 64 // InstantWorkers.num_workers  # one fsync per group of 8
    assert len(store.records()) == len(store.started()) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "started.jsonl",
        "trials.csv",
        "trials.jsonl",
    ]  # no running.json
