"""Run search trials on Ray actors, one per worker slot, each holding the super-network once.

Why actors and not one Ray Tune trial per config: a trial process would import torch, load the
checkpoint and the data for every config (seconds) to evaluate it in about a second; an actor pays
that once and then evaluates configs back to back, like a `LocalExecutor` thread does.

The driver puts the super-network (model config + state dict) and the tokenised validation split
into Ray's object store once (`ray.put`); every actor, also a replacement, builds its model,
`Evaluator` and `TrialFunction` from those references. Worker nodes therefore need nas-tune
installed, but neither the checkpoint folder nor the task data.

When an actor or its node dies mid-trial, the trial goes back to the front of the queue and runs
on a live actor, at most `max_retries` more times; after that it is a failed outcome. The dead
actor is replaced, and the replacement takes trials once the cluster has room for it. Either way
`wait()` returns exactly one outcome per submitted request, so the store holds each trial once.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, RayError, WorkerCrashedError
from transformers import AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from nas_tune.data import TaskSpec, TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.evaluate import Evaluator, LatencySettings
from nas_tune.evaluate.setup import EvaluationSetup
from nas_tune.models import ModelAdapter
from nas_tune.search.driver import SearchSettings
from nas_tune.search.executors import Executor, TrialOutcome, TrialRequest, run_trial
from nas_tune.search.executors import TrialFunction as TrialCallable
from nas_tune.search.objectives import TrialFunction
from nas_tune.search.run import ExecutorFactory
from nas_tune.search_space import SearchSpace

# A trial whose result is gone because its worker process or node is gone: run it again elsewhere.
LOST = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)


@dataclass(frozen=True)
class Supernet:
    """The fine-tuned super-network as plain data, so no worker needs the checkpoint folder."""

    config: PretrainedConfig
    state_dict: dict[str, torch.Tensor]
    adapter: ModelAdapter

    @classmethod
    def of(cls, model: PreTrainedModel, adapter: ModelAdapter) -> Supernet:
        return cls(model.config, {k: v.detach().cpu() for k, v in model.state_dict().items()}, adapter)

    def build(self) -> PreTrainedModel:
        model = AutoModelForSequenceClassification.from_config(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()


@dataclass(frozen=True)
class EvaluationSpec:
    """How the driver's evaluator scores a config, so that every actor scores it the same way."""

    search_space: SearchSpace
    task: TaskSpec
    batch_size: int
    flops_seq_len: int
    seed: int  # fixes which examples a fidelity < 1 uses; the search evaluator is seeded with the search seed
    objectives: list[str]
    latency: LatencySettings | None


def build_trial_function(supernet: Supernet, data: TokenizedSplit, spec: EvaluationSpec) -> TrialFunction:
    """Runs once per actor: the model (on the actor's GPU if Ray gave it one), its evaluator and objectives."""
    model = supernet.build()
    if ray.get_gpu_ids():
        model = model.to("cuda")
    evaluator = Evaluator(
        model,
        supernet.adapter,
        spec.search_space,
        spec.task,
        data,
        batch_size=spec.batch_size,
        flops_seq_len=spec.flops_seq_len,
        seed=spec.seed,
    )
    return TrialFunction(evaluator, spec.objectives, spec.latency)


@dataclass
class WorkerStats:
    name: str  # ray-actor-<i>@<node ip>, as in the outcomes
    node_id: str
    pid: int
    builds: int  # times this actor built its trial function: 1, however many trials it ran
    build_seconds: float
    trials: int


@ray.remote(max_restarts=0)  # a dead actor is replaced by the executor, so its trial can move to a live one
class _Worker:
    """One worker slot: builds its trial function once, then evaluates configs back to back."""

    def __init__(self, index: int, threads: int, build: Callable[..., TrialCallable], *build_args: Any):
        torch.set_num_threads(threads)
        name = f"ray-actor-{index}@{ray.util.get_node_ip_address()}"
        self.stats = WorkerStats(name, ray.get_runtime_context().get_node_id(), os.getpid(), 0, 0.0, 0)
        start = time.perf_counter()
        self.function = build(*build_args)  # Ray resolved the object references to the shared objects
        self.stats.builds += 1
        self.stats.build_seconds = time.perf_counter() - start

    def ready(self) -> str:
        return self.stats.name

    def evaluate(self, request: TrialRequest) -> TrialOutcome:
        self.stats.trials += 1
        return run_trial(self.function, request, self.stats.name)

    def report(self) -> WorkerStats:
        return self.stats


@dataclass
class _Actor:
    handle: Any  # ray.actor.ActorHandle
    name: str


@dataclass
class _Attempt:
    request: TrialRequest
    actor: _Actor
    retries: int  # how often this request already ran on an actor that died
    start: float


class RayExecutor(Executor):
    """`num_workers` Ray actors, each built once by `build(*build_args)` (object references are resolved).

    Trials are `evaluate` calls on idle actors; requests wait in a queue while every actor is busy.
    """

    def __init__(
        self,
        build: Callable[..., TrialCallable],
        build_args: tuple[Any, ...],
        num_workers: int,
        *,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        max_retries: int = 2,
        startup_timeout: float = 600.0,
    ):
        self.num_workers = num_workers
        self.max_retries = max_retries
        self.startup_timeout = startup_timeout
        self.retried = 0  # trials re-queued after their actor died
        self._build, self._build_args = build, build_args
        # SPREAD: each actor holds a model copy and wants its own cores, so use every node before doubling up.
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker, "scheduling_strategy": "SPREAD"}
        self._threads = max(1, int(cpus_per_worker))
        self._queue: deque[tuple[TrialRequest, int]] = deque()
        self._idle: list[_Actor] = []
        self._busy: dict[ray.ObjectRef, _Attempt] = {}
        self._starting: dict[ray.ObjectRef, _Actor] = {}
        self._started = 0
        self._start_error = ""
        for _ in range(num_workers):
            self._start_actor()

    def _start_actor(self) -> None:
        index, self._started = self._started, self._started + 1
        handle = _Worker.options(**self._options).remote(index, self._threads, self._build, *self._build_args)
        self._starting[handle.ready.remote()] = _Actor(handle, f"ray-actor-{index}")

    def submit(self, request: TrialRequest) -> None:
        self._queue.append((request, 0))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            actor = self._idle.pop()
            request, retries = self._queue.popleft()
            self._busy[actor.handle.evaluate.remote(request)] = _Attempt(request, actor, retries, time.time())

    @property
    def running(self) -> int:
        return len(self._queue) + len(self._busy)

    def wait(self) -> list[TrialOutcome]:
        outcomes: list[TrialOutcome] = []
        while not outcomes:
            refs = [*self._busy, *self._starting]
            if not refs:
                raise RuntimeError(
                    f"no Ray actor is left to run the {len(self._queue)} queued trials; last start failure: {self._start_error or 'none'}"
                )
            # With a trial running something will happen; with only actors starting, the cluster may lack room for them.
            ready, _ = ray.wait(refs, num_returns=1, timeout=None if self._busy else self.startup_timeout)
            if not ready:
                raise UserError(
                    f"no Ray actor started within {self.startup_timeout:.0f} s: the cluster has no room for a worker with "
                    f"{self._options['num_cpus']:g} CPU(s) and {self._options['num_gpus']:g} GPU(s); add nodes or lower --cpus-per-worker/--gpus-per-worker."
                )
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in {*ready, *done}:
                if ref in self._starting:
                    self._on_started(ref)
                elif (outcome := self._on_finished(ref)) is not None:
                    outcomes.append(outcome)
            self._dispatch()
        return outcomes

    def _on_started(self, ref: ray.ObjectRef) -> None:
        actor = self._starting.pop(ref)
        try:
            actor.name = ray.get(ref)
        except RayError as exc:  # not replaced: a build that failed once (bad checkpoint, no GPU) fails again
            self._start_error = f"{actor.name}: {exc}"
            print(f"warning: Ray actor {actor.name} failed to start: {str(exc).splitlines()[0]}", file=sys.stderr)
            return
        self._idle.append(actor)

    def _on_finished(self, ref: ray.ObjectRef) -> TrialOutcome | None:
        attempt = self._busy.pop(ref)
        try:
            outcome = ray.get(ref)
        except LOST as exc:
            return self._on_lost(attempt, exc)
        except RayError as exc:  # the actor lives, but the call itself failed (e.g. an unpicklable result)
            outcome = TrialOutcome(
                attempt.request, None, f"{type(exc).__name__}: {exc}", attempt.actor.name, attempt.start, time.time()
            )
        self._idle.append(attempt.actor)
        return outcome

    def _on_lost(self, attempt: _Attempt, exc: RayError) -> TrialOutcome | None:
        """Replace the dead actor; run the trial again on a live one, or fail it once its retries are used up."""
        ray.kill(attempt.actor.handle, no_restart=True)  # a node that only lost the result may still hold the actor
        self._start_actor()
        reason = str(exc).splitlines()[0]
        trial_id = attempt.request.trial_id
        if attempt.retries < self.max_retries:
            self.retried += 1
            self._queue.appendleft((attempt.request, attempt.retries + 1))
            print(
                f"warning: Ray actor {attempt.actor.name} died running trial {trial_id} ({reason}); running it again",
                file=sys.stderr,
            )
            return None
        message = (
            f"the Ray actor died on each of {attempt.retries + 1} attempts (max_retries={self.max_retries}): {reason}"
        )
        return TrialOutcome(attempt.request, None, message, attempt.actor.name, attempt.start, time.time())

    def _actors(self) -> list[_Actor]:
        return [*self._idle, *(a.actor for a in self._busy.values()), *self._starting.values()]

    def worker_stats(self) -> list[WorkerStats]:
        """Per live actor: name, builds, trials (blocks until every starting actor is ready)."""
        return ray.get([a.handle.report.remote() for a in self._actors()])

    def close(self) -> None:
        for actor in self._actors():
            ray.kill(actor.handle, no_restart=True)
        self._idle, self._busy, self._starting = [], {}, {}


def connect(address: str | None = None, *, num_cpus: float = 1, num_gpus: float = 0) -> None:
    """Join the cluster at `address`, or start a local one with `num_cpus`; keep a connection that already exists."""
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=math.ceil(num_cpus), include_dashboard=False)  # GPUs: as many as Ray detects
        found = ray.cluster_resources().get("GPU", 0)
        if num_gpus > found:
            raise UserError(
                f"the workers need {num_gpus:g} GPU(s) but this machine has {found:g}; lower --gpus-per-worker or --workers, or run on a GPU node."
            )
        return
    host, _, port = address.rpartition(":")
    if port.isdigit():  # Ray itself retries a dead HOST:PORT for minutes
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError:
            raise UserError(
                f"nothing answers at {address}; start the cluster with `ray start --head --port {port}` or fix --address."
            ) from None
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(
            f"could not connect to the Ray cluster at {address} ({str(exc).splitlines()[0]}); check --address and RAY_AUTH_MODE."
        ) from None


def ray_executor(
    address: str | None = None, cpus_per_worker: float = 1, gpus_per_worker: float = 0, max_retries: int = 2
) -> ExecutorFactory:
    """An `ExecutorFactory` for `search_checkpoint`: one Ray actor per `settings.workers`, on `address` or a local cluster."""
    if cpus_per_worker <= 0 or gpus_per_worker < 0 or max_retries < 0:
        raise UserError(
            f"--cpus-per-worker must be positive, --gpus-per-worker and --max-retries at least 0 (got {cpus_per_worker}, {gpus_per_worker}, {max_retries})."
        )

    def factory(setup: EvaluationSetup, settings: SearchSettings, latency: LatencySettings | None) -> RayExecutor:
        connect(address, num_cpus=settings.workers * cpus_per_worker, num_gpus=settings.workers * gpus_per_worker)
        evaluator = setup.evaluator
        supernet = ray.put(Supernet.of(setup.loaded.model, setup.loaded.adapter))
        data = ray.put(evaluator.data)
        spec = EvaluationSpec(
            evaluator.search_space,
            evaluator.task,
            evaluator.batch_size,
            evaluator.flops_seq_len,
            settings.seed,
            settings.objectives,
            latency,
        )
        return RayExecutor(
            build_trial_function,
            (supernet, data, spec),
            settings.workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            max_retries=max_retries,
        )

    return factory
