"""Executors decide *where* a trial runs; they never know which searcher asked for it.

A worker holds the fine-tuned super-network and the tokenised data once and evaluates many configs:
never a process or a model load per trial. The Ray executor implements the same interface.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from nas_tune.search_space import Config

TrialFunction = Callable[[Config, float], dict[str, float]]  # (config, fidelity) -> metrics


@dataclass(frozen=True)
class TrialRequest:
    trial_id: int
    config: Config
    fidelity: float = 1.0


@dataclass
class TrialOutcome:
    request: TrialRequest
    metrics: dict[str, float] | None  # None when the trial failed
    error: str | None
    worker: str
    start_time: float
    end_time: float


def run_trial(function: TrialFunction, request: TrialRequest, worker: str) -> TrialOutcome:
    """Evaluate one request; a crash becomes a failed outcome instead of ending the search."""
    start = time.time()
    try:
        return TrialOutcome(request, function(request.config, request.fidelity), None, worker, start, time.time())
    except Exception as exc:  # noqa: BLE001 - one bad config must not stop the search
        message = f"{type(exc).__name__}: {exc}"
        return TrialOutcome(request, None, message + "\n" + traceback.format_exc(limit=3), worker, start, time.time())


class Executor(ABC):
    num_workers: int

    @abstractmethod
    def submit(self, request: TrialRequest) -> None: ...

    @abstractmethod
    def wait(self) -> list[TrialOutcome]:
        """Block until at least one submitted trial finished; return every finished one."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def running(self) -> int: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def threads_per_worker(num_workers: int) -> int:
    """Torch intra-op threads each of `num_workers` worker threads gets: the cores split, never oversubscribed."""
    return max(1, (os.cpu_count() or 1) // num_workers)


class LocalExecutor(Executor):
    """N worker threads sharing one in-memory super-network (torch releases the GIL in its kernels).

    Sub-networks are sliced copies, so concurrent trials never touch each other's weights. Intra-op
    threads are split between workers so they do not oversubscribe the cores.
    """

    def __init__(self, function: TrialFunction, num_workers: int = 1):
        self.function = function
        self.num_workers = num_workers
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(threads_per_worker(num_workers))
        self._pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="nas-tune-worker")
        self._done: queue.Queue[TrialOutcome] = queue.Queue()
        self._running = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._names = iter(range(10**9))

    def _worker_name(self) -> str:
        if not hasattr(self._local, "name"):
            with self._lock:
                self._local.name = f"thread-{next(self._names)}"
        return self._local.name

    def _run(self, request: TrialRequest) -> None:
        self._done.put(run_trial(self.function, request, self._worker_name()))

    def submit(self, request: TrialRequest) -> None:
        with self._lock:
            self._running += 1
        self._pool.submit(self._run, request)

    def wait(self) -> list[TrialOutcome]:
        outcomes = [self._done.get()]
        while not self._done.empty():
            outcomes.append(self._done.get_nowait())
        with self._lock:
            self._running -= len(outcomes)
        return outcomes

    @property
    def running(self) -> int:
        return self._running

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self._threads_before)
