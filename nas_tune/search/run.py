"""Run a search against a super-network checkpoint from user-level options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from nas_tune.errors import UserError
from nas_tune.evaluate import LatencySettings
from nas_tune.evaluate.setup import EvaluationSetup, checkpoint_evaluator, read_checkpoint
from nas_tune.metrics import count_parameters
from nas_tune.search.driver import SearchDriver, SearchSettings, check_resumable
from nas_tune.search.executors import Executor, LocalExecutor
from nas_tune.search.objectives import TrialFunction
from nas_tune.search.searchers import start_searcher
from nas_tune.search.store import ResultsStore

ExecutorFactory = Callable[[EvaluationSetup, SearchSettings, "LatencySettings | None"], Executor]


def local_executor(setup: EvaluationSetup, settings: SearchSettings, latency: LatencySettings | None) -> Executor:
    """Worker threads sharing the driver's loaded super-network and tokenised validation data."""
    return LocalExecutor(TrialFunction(setup.evaluator, settings.objectives, latency), settings.workers)


def search_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    settings: SearchSettings,
    *,
    search_space: str | None = None,
    force: bool = False,
    data_dir: str | None = None,
    batch_size: int = 64,
    latency: LatencySettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    executor_factory: ExecutorFactory = local_executor,
) -> tuple[ResultsStore, EvaluationSetup]:
    """Search a super-network checkpoint; `executor_factory` decides where trials run (threads, Ray actors)."""
    trained = read_checkpoint(checkpoint)
    meta, trained_space = trained.meta, trained.search_space
    space_name = search_space or trained_space
    if space_name != trained_space:
        if not force:
            raise UserError(
                f"{checkpoint} was trained for the '{trained_space}' space, not '{space_name}'; pass --force to search it anyway."
            )
        print(
            f"warning: searching the '{space_name}' space of a super-network trained for '{trained_space}'",
            file=sys.stderr,
        )
    store = ResultsStore(output)
    metadata = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "task": meta["task"],
        "search_space": space_name,
        "searcher": settings.searcher,
        "objectives": settings.objectives,
        "seed": settings.seed,
        "max_params": settings.max_params,
        "settings": asdict(settings),
        "strategy": meta.get("strategy"),
    }
    check_resumable(store, metadata, resume=resume, overwrite=overwrite)
    setup = checkpoint_evaluator(
        trained, data_dir=data_dir, search_space=space_name, batch_size=batch_size, seed=settings.seed
    )
    store.run_dir.mkdir(parents=True, exist_ok=True)
    store.write_metadata(metadata)
    space = setup.evaluator.search_space
    searcher = start_searcher(settings.searcher, space, settings.objectives, seed=settings.seed)
    model, adapter = setup.loaded.model, setup.loaded.adapter

    def size_of(config):
        return count_parameters(model, adapter, space.to_subnetwork(config)).layer_fraction

    with executor_factory(setup, settings, latency) as executor:
        SearchDriver(store, searcher, executor, settings, size_of=size_of, show_progress=show_progress).run()
    return store, setup
