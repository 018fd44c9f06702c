"""Search throughput: threads vs. Ray actors on this machine, a simulation up to 256 workers, and why actors.

1. measured: a seeded `random` search of --trials configs of a small MiniLM super-network (RTE, 64
   training / 128 validation examples, 64 tokens, 1 epoch) with the local executor (threads) and the
   Ray executor (actors on a local Ray instance), 1 and 2 workers, the machine's cores split between
   the workers. Throughput counts the search loop; actor start-up (import + build, paid once) is apart.
2. simulated: the real `SearchDriver`, the real `local_search` searcher and a real results store,
   with an executor whose `wait()` advances a virtual clock by evaluation times drawn from the
   measured ones. The driver's own time per trial is real wall time and advances the clock too (one
   driver serves every worker), so the simulation shows where the driver becomes the bottleneck.
3. Ray Tune: one `ray.tune.Tuner` trial per config, whose trainable loads checkpoint + data and
   evaluates that config, vs. the actor design, as time per trial beyond the evaluation itself.

    GLUE_DIR=../shared/data/glue python benchmarks/scaling.py [--trials 32] [--tune-trials 6]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.evaluate.setup import EvaluationSetup, checkpoint_evaluator, read_checkpoint
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.metrics import count_parameters
from nas_tune.report.plots import save_figure
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import Executor, TrialOutcome, TrialRequest
from nas_tune.search.ray_executor import connect, ray_executor
from nas_tune.search.run import local_executor
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
OBJECTIVES = ["error", "params"]
SIMULATED_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def load_setup(checkpoint: Path, data_dir: str | None) -> EvaluationSetup:
    """The driver's evaluator exactly as `search_checkpoint` builds it (seed 0)."""
    return checkpoint_evaluator(read_checkpoint(checkpoint), data_dir=data_dir)


def search(setup: EvaluationSetup, executor: Executor, settings: SearchSettings, folder: Path) -> tuple[pd.DataFrame, float]:
    """The driver loop of `search_checkpoint` (same initial configs); returns the trials and the loop's wall time."""
    space = setup.evaluator.search_space
    searcher = make_searcher(settings.searcher, space.config_space(), OBJECTIVES, seed=settings.seed,
                             initial_configs=[space.largest(), space.smallest()])
    start = time.perf_counter()
    frame = SearchDriver(ResultsStore(folder), searcher, executor, settings, show_progress=False).run()
    return frame, time.perf_counter() - start


def measured_runs(setup: EvaluationSetup, trials: int, workdir: Path) -> tuple[list[dict], pd.DataFrame]:
    cores = os.cpu_count() or 1
    connect(num_cpus=cores)
    rows, frames = [], []
    for kind in ("local", "ray"):
        for workers in (1, 2):
            settings = SearchSettings(searcher="random", num_trials=trials, workers=workers, seed=0)
            cpus = max(1, cores // workers)
            start = time.perf_counter()
            if kind == "local":
                executor = local_executor(setup, settings, None)
            else:
                executor = ray_executor(cpus_per_worker=cpus)(setup, settings, None)
                executor.worker_stats()  # every actor has built its super-network: only the search loop is timed
            startup = time.perf_counter() - start
            with executor:
                frame, wall = search(setup, executor, settings, workdir / f"{kind}-{workers}")
            evaluation = frame["eval_seconds"].mean()
            rows.append({"section": "measured", "executor": kind, "workers": workers, "cpus_per_worker": cpus, "trials": len(frame),
                         "seconds": wall, "trials_per_min": 60 * len(frame) / wall, "startup_s": startup, "mean_eval_s": evaluation,
                         "overhead_per_trial_s": wall * workers / len(frame) - evaluation})
            frames.append(frame.assign(executor=kind, workers=workers))
            print(rows[-1], file=sys.stderr)
    return rows, pd.concat(frames)


class SimulatedExecutor(Executor):
    """Workers on a virtual clock: a trial takes a duration drawn from measured ones, its error comes with it.

    Time the driver spends between calls (searcher, store, bookkeeping) is real and moves the clock too.
    """

    def __init__(self, num_workers: int, measured: pd.DataFrame, params_of, seed: int = 0):
        self.num_workers = num_workers
        self.clock = 0.0
        self.driver_seconds = 0.0
        self.work_seconds = 0.0  # evaluation time handed out: work / workers is the clock with perfect packing, no driver
        self._measured = measured[["eval_seconds", "error"]].to_numpy()
        self._params_of = params_of
        self._rng = np.random.default_rng(seed)
        self._finishing: list[tuple[float, int, TrialRequest, dict]] = []
        self._last = time.perf_counter()

    def _driver_time(self) -> None:
        now = time.perf_counter()
        self.driver_seconds += now - self._last
        self.clock += now - self._last

    def submit(self, request: TrialRequest) -> None:
        self._driver_time()
        seconds, error = self._measured[self._rng.integers(len(self._measured))]
        metrics = {"error": float(error), "params": self._params_of(request.config), "eval_seconds": float(seconds)}
        self.work_seconds += seconds
        heapq.heappush(self._finishing, (self.clock + seconds, request.trial_id, request, metrics))
        self._last = time.perf_counter()

    def wait(self) -> list[TrialOutcome]:
        self._driver_time()
        self.clock = max(self.clock, self._finishing[0][0])
        outcomes = []
        while self._finishing and self._finishing[0][0] <= self.clock:
            end, _, request, metrics = heapq.heappop(self._finishing)
            outcomes.append(TrialOutcome(request, metrics, None, "simulated", end - metrics["eval_seconds"], end))
        self._last = time.perf_counter()
        return outcomes

    @property
    def running(self) -> int:
        return len(self._finishing)

    def close(self) -> None:
        pass


def simulated_runs(setup: EvaluationSetup, measured: pd.DataFrame, workdir: Path, searcher: str) -> list[dict]:
    model, adapter, space = setup.loaded.model, setup.loaded.adapter, setup.evaluator.search_space
    sizes: dict[str, float] = {}

    def params_of(config) -> float:
        key = json.dumps(config, sort_keys=True)
        if key not in sizes:
            sizes[key] = count_parameters(model, adapter, space.to_subnetwork(config)).layer_fraction
        return sizes[key]

    rows = []
    for workers in SIMULATED_WORKERS:
        trials = max(128, 16 * workers)  # 16 rounds per worker: the last, partly idle round weighs little
        executor = SimulatedExecutor(workers, measured, params_of)
        settings = SearchSettings(searcher=searcher, num_trials=trials, workers=workers, seed=0)
        frame, wall = search(setup, executor, settings, workdir / f"sim-{searcher}-{workers}")
        ideal = 60 * len(frame) * workers / executor.work_seconds
        throughput = 60 * len(frame) / executor.clock
        rows.append({"section": "simulated", "executor": f"simulated ({searcher})", "workers": workers, "cpus_per_worker": None,
                     "trials": len(frame), "seconds": executor.clock, "trials_per_min": throughput,
                     "mean_eval_s": executor.work_seconds / len(frame),
                     "overhead_per_trial_s": executor.driver_seconds / len(frame), "ideal_trials_per_min": ideal,
                     "efficiency": throughput / ideal, "real_seconds": wall})
        print(rows[-1], file=sys.stderr)
    return rows


def tune_trial(config: dict, checkpoint: str, data_dir: str | None) -> None:
    """One Ray Tune trial: what a worker would do per config without actors (import, load, evaluate)."""
    start = time.perf_counter()
    from ray import tune

    from nas_tune.cli import quiet_libraries
    from nas_tune.evaluate.setup import checkpoint_evaluator, read_checkpoint

    quiet_libraries()
    imported = time.perf_counter()
    setup = checkpoint_evaluator(read_checkpoint(checkpoint), data_dir=data_dir)
    loaded = time.perf_counter()
    result = setup.evaluator.evaluate(config["subnet"])
    tune.report({"error": result.error, "import_s": imported - start, "load_s": loaded - imported, "eval_s": result.seconds,
                 "trial_s": time.perf_counter() - start})


def tune_runs(checkpoint: Path, data_dir: str | None, configs: list[dict], workdir: Path) -> tuple[list[dict], dict]:
    """`configs` one at a time (each trial gets every core), like the 1-worker actor run it is compared with."""
    from ray import tune

    cores = os.cpu_count() or 1
    trainable = tune.with_resources(tune.with_parameters(tune_trial, checkpoint=str(checkpoint), data_dir=data_dir), {"cpu": cores})
    tuner = tune.Tuner(trainable, param_space={"subnet": tune.grid_search(configs)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1),
                       run_config=tune.RunConfig(storage_path=str(workdir / "tune"), name="scaling", verbose=0))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Ray Tune trials failed, the first with: {grid.errors[0]}")
    results = grid.get_dataframe()
    evaluation = results["eval_s"].mean()
    row = {"section": "per_trial", "executor": "ray tune trial per config", "workers": 1, "cpus_per_worker": cores, "trials": len(results),
           "seconds": wall, "trials_per_min": 60 * len(results) / wall, "mean_eval_s": evaluation,
           "overhead_per_trial_s": wall / len(results) - evaluation}
    breakdown = {k: [round(v, 3) for v in results[k]] for k in ("import_s", "load_s", "eval_s", "trial_s")}  # per trial
    print(row, breakdown, file=sys.stderr)
    return [row], breakdown


def plot(table: pd.DataFrame, path: Path) -> None:
    figure = Figure(figsize=(15, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    measured, simulated = table[table["section"] == "measured"], table[table["section"] == "simulated"]
    left, middle, right = figure.subplots(1, 3)
    names = {"local": "threads", "ray": "Ray actors", "ray tune trial per config": "Ray Tune\ntrial per config"}
    labels = [f"{names[r.executor]}\n{r.workers} worker{'s' if r.workers > 1 else ''}" for r in measured.itertuples()]
    left.bar(labels, measured["trials_per_min"], color=["tab:blue" if e == "local" else "tab:orange" for e in measured["executor"]])
    left.set_ylabel("trials per minute")
    left.set_title(f"measured on this machine ({os.cpu_count()} cores)")
    for name, rows in simulated.groupby("executor"):
        middle.loglog(rows["workers"], rows["trials_per_min"], "o-", label=name)
    ideal = simulated.drop_duplicates("workers")
    middle.loglog(ideal["workers"], ideal["ideal_trials_per_min"], "k--", label="no driver time, perfect packing")
    middle.set_xlabel("workers")
    middle.set_ylabel("trials per minute (virtual clock)")
    middle.set_title("simulated: measured evaluation times")
    middle.legend(fontsize=8)
    axis = middle.twinx()
    for _executor, rows in simulated.groupby("executor"):
        axis.semilogx(rows["workers"], 1000 * rows["overhead_per_trial_s"], "x:", alpha=0.6)
    axis.set_ylim(0, 1.2 * 1000 * simulated["overhead_per_trial_s"].max())
    axis.set_ylabel("driver + searcher ms per trial (x)")
    per_trial = table[(table["section"] == "per_trial") | ((table["section"] == "measured") & (table["workers"] == 1))]
    right.bar([names[e] for e in per_trial["executor"]], per_trial["overhead_per_trial_s"], color="tab:gray")
    right.set_yscale("log")
    right.set_ylabel("seconds per trial beyond evaluation (log)")
    right.set_title("per-trial overhead, 1 worker")
    for ax in (left, middle, right):
        ax.grid(True, alpha=0.3)
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=32, help="trials per measured search (default: 32)")
    parser.add_argument("--tune-trials", type=int, default=6, help="configs run as Ray Tune trials (default: 6)")
    parser.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"), help="GLUE folder (default: $GLUE_DIR)")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir and str(Path(args.data_dir).resolve())  # Ray Tune trials run in folders of their own
    # Ray starts worker processes at nice 15: on a machine that also runs other jobs the actors would lose to them,
    # while the threads they are compared with run at nice 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    quiet_libraries()
    started, load = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nas-tune-scaling-") as scratch:
        workdir = Path(scratch)
        checkpoint = workdir / "supernet"
        data = DataConfig("rte", data_dir=args.data_dir, max_train_samples=64, max_validation_samples=128)
        finetune_supernet(None, data, FinetuneConfig(epochs=1, batch_size=16), checkpoint, max_seq_length=64, show_progress=False)
        setup = load_setup(checkpoint, args.data_dir)
        rows, measured = measured_runs(setup, args.trials, workdir)
        torch.set_num_threads(os.cpu_count() or 1)  # the local executor changed it; the driver's own work uses every core
        one_core_each = measured[(measured["executor"] == "ray") & (measured["workers"] == 2)]  # a worker per core, as on a cluster
        rows += simulated_runs(setup, one_core_each, workdir, "local_search")
        configs = [r.config for r in ResultsStore(workdir / "ray-1").records()][: args.tune_trials]  # trial order: 1 worker
        tune_rows, breakdown = tune_runs(checkpoint, args.data_dir, configs, workdir)
        rows += tune_rows
        ray.shutdown()
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "scaling.csv", table.to_csv(index=False))
    plot(table, RESULTS / "scaling.png")
    atomic_write_json(RESULTS / "scaling.json", {
        "command": " ".join(["python benchmarks/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {k: os.environ.get(k) for k in ("GLUE_DIR", "RAY_AUTH_MODE", "RAY_worker_niceness")},
        "cores": os.cpu_count(), "load_average_before_after": [load[0], os.getloadavg()[0]], "torch": torch.__version__, "ray": ray.__version__, "total_seconds": time.perf_counter() - started,
        "measured_eval_seconds": measured["eval_seconds"].describe().to_dict(), "tune_trial_breakdown_s": breakdown,
        "rows": json.loads(table.to_json(orient="records")),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
