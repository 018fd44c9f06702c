"""Search throughput: threads vs. Ray actors on this machine, a simulation up to 256 workers, and why actors.

1. measured: a seeded `random` search of --trials configs of a small MiniLM super-network (RTE, 64
   training / 128 validation examples, 64 tokens, 1 epoch) with the local executor (threads) and the
   Ray executor (actors on a local Ray instance), 1 and 2 workers, the machine's cores split between
   the workers. Throughput counts the search loop; actor start-up (import + build, paid once) is apart.
2. simulated: the real `SearchDriver`, real searchers (random, local_search, morea, nsga2; EHVI
   apart with --ehvi, its model cost is its own) and a real results store, with an executor whose
   `wait()` advances a virtual clock by evaluation times drawn from the measured ones (or, with
   `--sections simulated`, around --eval-seconds). The driver's own time is real wall time and
   advances the clock too (one driver serves every worker), so the simulation shows where the
   driver becomes the bottleneck. The searcher's ask and tell are timed apart from the driver's
   bookkeeping (store commits, journal, executor calls); its thread CPU time is reported too, which
   load from other processes does not inflate. Efficiency = throughput / (workers / mean evaluation).
3. Ray Tune: one `ray.tune.Tuner` trial per config, whose trainable loads checkpoint + data and
   evaluates that config, vs. the actor design, as time per trial beyond the evaluation itself.

    GLUE_DIR=../shared/data/glue python benchmarks/scaling.py [--trials 32] [--tune-trials 6]
    python benchmarks/scaling.py --sections simulated [--eval-seconds 1.0] [--rounds-per-worker 16]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas_tune.cli import quiet_libraries
from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.evaluate.setup import EvaluationSetup, checkpoint_evaluator, read_checkpoint
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.metrics import count_parameters
from nas_tune.models import load_model
from nas_tune.report.plots import save_figure
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import Executor, TrialOutcome, TrialRequest
from nas_tune.search.ray_executor import connect, ray_executor
from nas_tune.search.run import local_executor
from nas_tune.search.searchers import SEARCHERS, Searcher, make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import SearchSpace, make_search_space
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

RESULTS = Path(__file__).parent / "results"
OBJECTIVES = ["error", "params"]
SIMULATED_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def load_setup(checkpoint: Path, data_dir: str | None) -> EvaluationSetup:
    """The driver's evaluator exactly as `search_checkpoint` builds it (seed 0)."""
    return checkpoint_evaluator(read_checkpoint(checkpoint), data_dir=data_dir)


class TimedSearcher:
    """A searcher whose ask (suggest) and tell (results) are timed apart from the driver that calls it."""

    def __init__(self, inner: Searcher):
        self.inner, self.multi_fidelity = inner, inner.multi_fidelity
        self.ask_seconds = self.tell_seconds = 0.0

    def suggest(self):
        start = time.perf_counter()
        try:
            return self.inner.suggest()
        finally:
            self.ask_seconds += time.perf_counter() - start

    def on_trial_complete(self, config, result) -> None:
        start = time.perf_counter()
        self.inner.on_trial_complete(config, result)
        self.tell_seconds += time.perf_counter() - start

    def on_trial_failed(self, config) -> None:
        start = time.perf_counter()
        self.inner.on_trial_failed(config)
        self.tell_seconds += time.perf_counter() - start


def search(
    space: SearchSpace, executor: Executor, settings: SearchSettings, folder: Path
) -> tuple[pd.DataFrame, float, TimedSearcher]:
    """The driver loop of `search_checkpoint` (same initial configs); the trials, the loop's wall time, the timed searcher."""
    searcher = TimedSearcher(
        make_searcher(
            settings.searcher,
            space.config_space(),
            OBJECTIVES,
            seed=settings.seed,
            initial_configs=[space.largest(), space.smallest()],
        )
    )
    start = time.perf_counter()
    frame = SearchDriver(ResultsStore(folder), searcher, executor, settings, show_progress=False).run()
    return frame, time.perf_counter() - start, searcher


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
                frame, wall, _ = search(setup.evaluator.search_space, executor, settings, workdir / f"{kind}-{workers}")
            evaluation = frame["eval_seconds"].mean()
            rows.append(
                {
                    "section": "measured",
                    "executor": kind,
                    "workers": workers,
                    "cpus_per_worker": cpus,
                    "trials": len(frame),
                    "seconds": wall,
                    "trials_per_min": 60 * len(frame) / wall,
                    "startup_s": startup,
                    "mean_eval_s": evaluation,
                    "overhead_per_trial_s": wall * workers / len(frame) - evaluation,
                }
            )
            frames.append(frame.assign(executor=kind, workers=workers))
            print(rows[-1], file=sys.stderr)
    return rows, pd.concat(frames)


class SimulatedExecutor(Executor):
    """Workers on a virtual clock: a trial takes a duration drawn from measured ones, its error comes with it.

    Time the driver spends between calls (searcher, store, bookkeeping) is real and moves the clock too.
    """

    def __init__(self, num_workers: int, measured: pd.DataFrame, params_of, seed: int = 0, cpu_clock: bool = False):
        self.num_workers = num_workers
        self.cpu_clock = (
            cpu_clock  # advance the clock by the driver's CPU time: immune to other processes, blind to fsync waits
        )
        self.clock = 0.0
        self.driver_seconds = 0.0
        self.work_seconds = (
            0.0  # evaluation time handed out: work / workers is the clock with perfect packing, no driver
        )
        self._measured = measured[["eval_seconds", "error"]].to_numpy()
        self._params_of = params_of
        self._rng = np.random.default_rng(seed)
        self._finishing: list[tuple[float, int, TrialRequest, dict]] = []
        self.driver_cpu_seconds = 0.0
        self.waits = 0  # calls that returned results: trials / waits is the mean group committed per fsync
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()

    def _driver_time(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.driver_seconds += now - self._last
        self.driver_cpu_seconds += cpu - self._last_cpu
        self.clock += cpu - self._last_cpu if self.cpu_clock else now - self._last

    def submit(self, request: TrialRequest) -> None:
        self._driver_time()
        seconds, error = self._measured[self._rng.integers(len(self._measured))]
        metrics = {"error": float(error), "params": self._params_of(request.config), "eval_seconds": float(seconds)}
        self.work_seconds += seconds
        heapq.heappush(self._finishing, (self.clock + seconds, request.trial_id, request, metrics))
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()

    def wait(self) -> list[TrialOutcome]:
        self._driver_time()
        self.clock = max(self.clock, self._finishing[0][0])
        outcomes = []
        while self._finishing and self._finishing[0][0] <= self.clock:
            end, _, request, metrics = heapq.heappop(self._finishing)
            outcomes.append(TrialOutcome(request, metrics, None, "simulated", end - metrics["eval_seconds"], end))
        self.waits += 1
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()
        return outcomes

    @property
    def running(self) -> int:
        return len(self._finishing)

    def close(self) -> None:
        pass


def simulated_runs(
    model,
    adapter,
    space: SearchSpace,
    measured: pd.DataFrame,
    workdir: Path,
    searcher: str,
    workers_list: tuple[int, ...],
    rounds_per_worker: int,
    *,
    cpu_clock: bool = False,
) -> list[dict]:
    sizes: dict[str, float] = {}

    def params_of(config) -> float:
        key = json.dumps(config, sort_keys=True)
        if key not in sizes:
            sizes[key] = count_parameters(model, adapter, space.to_subnetwork(config)).layer_fraction
        return sizes[key]

    rows = []
    for workers in workers_list:
        trials = max(8 * rounds_per_worker, rounds_per_worker * workers)  # the last, partly idle round weighs little
        executor = SimulatedExecutor(workers, measured, params_of, cpu_clock=cpu_clock)
        settings = SearchSettings(searcher=searcher, num_trials=trials, workers=workers, seed=0)
        frame, wall, timed = search(space, executor, settings, workdir / f"sim-{searcher}-{workers}")
        ideal = 60 * len(frame) * workers / executor.work_seconds
        throughput = 60 * len(frame) / executor.clock
        searcher_seconds = timed.ask_seconds + timed.tell_seconds
        rows.append(
            {
                "section": "simulated",
                "executor": f"simulated ({searcher})",
                "searcher": searcher,
                "workers": workers,
                "cpus_per_worker": None,
                "trials": len(frame),
                "seconds": executor.clock,
                "trials_per_min": throughput,
                "mean_eval_s": executor.work_seconds / len(frame),
                "overhead_per_trial_s": executor.driver_seconds / len(frame),
                "driver_ms_per_trial": 1000 * (executor.driver_seconds - searcher_seconds) / len(frame),
                "ask_ms_per_trial": 1000 * timed.ask_seconds / len(frame),
                "tell_ms_per_trial": 1000 * timed.tell_seconds / len(frame),
                "driver_and_searcher_cpu_ms_per_trial": 1000 * executor.driver_cpu_seconds / len(frame),
                "trials_per_commit": len(frame) / executor.waits,
                "ideal_trials_per_min": ideal,
                "efficiency": throughput / ideal,
                "real_seconds": wall,
                "clock": "driver cpu" if cpu_clock else "driver wall",
            }
        )
        print(rows[-1], file=sys.stderr)
    return rows


def synthetic_evaluations(eval_seconds: float, seed: int = 0) -> pd.DataFrame:
    """Evaluation times around `eval_seconds` (log-normal, 30 % spread) and errors, when nothing was measured."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"eval_seconds": eval_seconds * rng.lognormal(0.0, 0.3, 512), "error": rng.uniform(0.1, 0.6, 512)}
    )


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
    tune.report(
        {
            "error": result.error,
            "import_s": imported - start,
            "load_s": loaded - imported,
            "eval_s": result.seconds,
            "trial_s": time.perf_counter() - start,
        }
    )


def tune_runs(checkpoint: Path, data_dir: str | None, configs: list[dict], workdir: Path) -> tuple[list[dict], dict]:
    """`configs` one at a time (each trial gets every core), like the 1-worker actor run it is compared with."""
    from ray import tune

    cores = os.cpu_count() or 1
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, checkpoint=str(checkpoint), data_dir=data_dir), {"cpu": cores}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"subnet": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(workdir / "tune"), name="scaling", verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Ray Tune trials failed, the first with: {grid.errors[0]}")
    results = grid.get_dataframe()
    evaluation = results["eval_s"].mean()
    row = {
        "section": "per_trial",
        "executor": "ray tune trial per config",
        "workers": 1,
        "cpus_per_worker": cores,
        "trials": len(results),
        "seconds": wall,
        "trials_per_min": 60 * len(results) / wall,
        "mean_eval_s": evaluation,
        "overhead_per_trial_s": wall / len(results) - evaluation,
    }
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
    left.bar(
        labels,
        measured["trials_per_min"],
        color=["tab:blue" if e == "local" else "tab:orange" for e in measured["executor"]],
    )
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


SECTIONS = ("measured", "simulated", "tune")
EHVI_WORKERS = (1, 4, 16)  # EHVI's suggestions cost seconds: a shorter sweep, reported apart


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=32, help="trials per measured search (default: 32)")
    parser.add_argument("--tune-trials", type=int, default=6, help="configs run as Ray Tune trials (default: 6)")
    parser.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"), help="GLUE folder (default: $GLUE_DIR)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of measured,simulated,tune"
    )
    parser.add_argument("--searchers", default="random,local_search,morea,nsga2", help="searchers of the simulation")
    parser.add_argument("--ehvi", action="store_true", help=f"also simulate EHVI at {EHVI_WORKERS} workers")
    parser.add_argument("--workers", default=",".join(map(str, SIMULATED_WORKERS)), help="simulated worker counts")
    parser.add_argument(
        "--rounds-per-worker", type=int, default=16, help="simulated trials = this x workers (at least 8x it)"
    )
    parser.add_argument(
        "--cpu-clock",
        action="store_true",
        help="advance the simulated clock by the driver's CPU time, not wall time (for a machine shared with other jobs)",
    )
    parser.add_argument(
        "--eval-seconds", type=float, default=1.0, help="mean simulated evaluation when nothing is measured"
    )
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    args.searchers = [name.strip() for name in args.searchers.split(",") if name.strip()]
    try:
        args.workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        raise UserError(f"--workers must be comma-separated whole numbers, got {args.workers!r}.") from None
    if min(args.workers) <= 0:
        raise UserError(f"--workers must be positive, got {min(args.workers)}.")
    unknown = [n for n in args.sections if n not in SECTIONS] + [n for n in args.searchers if n not in SEARCHERS]
    if unknown:
        raise UserError(
            f"unknown section or searcher {unknown[0]!r}; sections are {', '.join(SECTIONS)}, searchers {', '.join(SEARCHERS)}."
        )
    if "tune" in args.sections and "measured" not in args.sections:
        raise UserError("--sections tune needs measured too (the Ray Tune trials rerun measured configs).")
    for name in ("trials", "tune_trials", "rounds_per_worker", "eval_seconds"):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    args.data_dir = args.data_dir and str(Path(args.data_dir).resolve())  # Ray Tune trials run in folders of their own
    return args


def run_sections(args: argparse.Namespace, workdir: Path, save: Callable[[list[dict], dict], None]) -> None:
    """Run the chosen sections, saving the table after each searcher: a stopped run keeps what it measured."""
    rows: list[dict] = []
    details: dict = {}
    if "measured" in args.sections:
        checkpoint = workdir / "supernet"
        data = DataConfig("rte", data_dir=args.data_dir, max_train_samples=64, max_validation_samples=128)
        finetune_supernet(
            None, data, FinetuneConfig(epochs=1, batch_size=16), checkpoint, max_seq_length=64, show_progress=False
        )
        setup = load_setup(checkpoint, args.data_dir)
        measured_rows, measured = measured_runs(setup, args.trials, workdir)
        rows += measured_rows
        torch.set_num_threads(
            os.cpu_count() or 1
        )  # the local executor changed it; the driver's own work uses every core
        evaluations = measured[
            (measured["executor"] == "ray") & (measured["workers"] == 2)
        ]  # a worker per core, as on a cluster
        model, adapter, space = setup.loaded.model, setup.loaded.adapter, setup.evaluator.search_space
        details["measured_eval_seconds"] = measured["eval_seconds"].describe().to_dict()
    else:
        loaded = load_model(None, 2)
        model, adapter = loaded.model, loaded.adapter
        space = make_search_space("small", adapter.shape(model))
        evaluations = synthetic_evaluations(args.eval_seconds)
    if "simulated" in args.sections:
        for name in args.searchers:
            rows += simulated_runs(
                model,
                adapter,
                space,
                evaluations,
                workdir,
                name,
                args.workers,
                args.rounds_per_worker,
                cpu_clock=args.cpu_clock,
            )
            save(rows, details)
        if args.ehvi:
            rows += simulated_runs(
                model,
                adapter,
                space,
                evaluations,
                workdir,
                "ehvi",
                EHVI_WORKERS,
                max(1, args.rounds_per_worker // 4),
                cpu_clock=args.cpu_clock,
            )
    if "tune" in args.sections:
        configs = [r.config for r in ResultsStore(workdir / "ray-1").records()][
            : args.tune_trials
        ]  # trial order: 1 worker
        tune_rows, details["tune_trial_breakdown_s"] = tune_runs(workdir / "supernet", args.data_dir, configs, workdir)
        rows += tune_rows
    save(rows, details)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UserError as error:
        print(f"scaling.py: error: {error}", file=sys.stderr)
        return 2
    # Ray starts worker processes at nice 15: on a machine that also runs other jobs the actors would lose to them,
    # while the threads they are compared with run at nice 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    quiet_libraries()
    started, load = time.perf_counter(), os.getloadavg()
    everything = set(args.sections) == set(SECTIONS)
    name = "scaling" if everything else "scaling_" + "_".join(args.sections)  # a partial run keeps the full one's files

    def save(rows: list[dict], details: dict) -> None:
        table = pd.DataFrame(rows)
        RESULTS.mkdir(exist_ok=True)
        atomic_write_text(RESULTS / f"{name}.csv", table.to_csv(index=False))
        atomic_write_json(
            RESULTS / f"{name}.json",
            {
                "command": " ".join(["python benchmarks/scaling.py", *(argv if argv is not None else sys.argv[1:])]),
                "environment": {k: os.environ.get(k) for k in ("GLUE_DIR", "RAY_AUTH_MODE", "RAY_worker_niceness")},
                "cores": os.cpu_count(),
                "load_average_before_after": [load[0], os.getloadavg()[0]],
                "torch": torch.__version__,
                "ray": ray.__version__,
                "total_seconds": time.perf_counter() - started,
                **details,
                "rows": json.loads(table.to_json(orient="records")),
            },
        )
        if everything and len(table) and set(table["section"]) >= {"measured", "simulated"}:
            plot(table, RESULTS / "scaling.png")

    with tempfile.TemporaryDirectory(prefix="nas-tune-scaling-") as scratch:
        run_sections(args, Path(scratch), save)
        ray.shutdown()
    print(pd.read_csv(RESULTS / f"{name}.csv").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
