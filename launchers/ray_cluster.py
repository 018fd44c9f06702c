"""Run nas-tune on a Ray cluster: the search's workers are Ray actors, fine-tuning optionally a Ray task.

    RAY_AUTH_MODE=disabled ray start --head --port 6379 --num-cpus 8   # head node (or keep Ray's token auth)
    RAY_AUTH_MODE=disabled ray start --address HEAD:6379              # every other node
    RAY_AUTH_MODE=disabled python launchers/ray_cluster.py --address HEAD:6379 --dataset rte --workers 8
    python launchers/ray_cluster.py --address HEAD:6379 --checkpoint runs/rte/supernet --workers 8 --output runs/rte-search

Without --address a local Ray instance with --workers x --cpus-per-worker CPUs is started. Every node
needs nas-tune installed; the super-network and the tokenised validation data reach the actors
through Ray's object store. With --finetune-on-cluster the super-network is fine-tuned as one Ray
task; its folder travels to and from that task as bytes (no shared storage), but the task reads the
training data on its node: --data-dir / $GLUE_DIR must exist there too (or the hub be reachable).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from nas_tune.cli import quiet_libraries
from nas_tune.cli.options import refuse_existing_output
from nas_tune.cli.pipeline_options import (
    add_run_folder_options,
    parse_pipeline_args,
    pipeline_config,
    pipeline_parser,
    print_pipeline_result,
)
from nas_tune.cli.run_config import save_run_config
from nas_tune.cli.search import SEARCH_MARKERS, print_search_summary, search_settings
from nas_tune.errors import UserError
from nas_tune.io import atomic_folder, atomic_write_bytes
from nas_tune.settings import DataConfig, FinetuneConfig

if TYPE_CHECKING:  # Ray, torch and the stages are imported when a run starts, so --help and bad options answer at once
    from nas_tune.search.run import ExecutorFactory
    from nas_tune.supernet import FinetuneResult


def ship_by_value() -> None:
    """Worker nodes cannot import this script: Ray ships its functions by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def read_folder(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)


def _finetune_in_scratch(
    files: dict[str, bytes], model: str | None, data: DataConfig, config: FinetuneConfig, options: dict
) -> tuple[dict[str, bytes], FinetuneResult]:
    """On a cluster node: fine-tune in a scratch copy of the output folder (resume works) and return its files."""
    from nas_tune.supernet.run import finetune_supernet

    quiet_libraries()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "supernet"
        write_folder(folder, files)
        result = finetune_supernet(model, data, config, folder, **options)
        return read_folder(folder), result


def finetune_on_cluster(
    model: str | None,
    data: DataConfig,
    config: FinetuneConfig,
    output: str | Path,
    *,
    num_cpus: float = 1,
    num_gpus: float = 0,
    **options,
) -> FinetuneResult:
    """`finetune_supernet` (same arguments) as one Ray task; the checkpoint ends up in `output` on this machine.

    The task starts from the bytes of `output` (so --resume works), and Ray reruns it from them if its node dies.
    Local paths (model folder, data) are made absolute: the node runs elsewhere and must see them at the same path.
    """
    import ray
    from ray.exceptions import RayTaskError

    ship_by_value()
    output = Path(output)
    files = read_folder(output) if output.is_dir() else {}
    if model and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    glue = data.data_dir or os.environ.get("GLUE_DIR")  # the node may also lack the variable
    data = replace(data, data_dir=glue and str(Path(glue).expanduser().resolve()))
    task = ray.remote(_finetune_in_scratch).options(num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        written, result = ray.get(task.remote(files, model, data, config, {**options, "show_progress": False}))
    except RayTaskError as exc:
        if isinstance(exc.cause, UserError):
            raise exc.cause from None
        raise
    with atomic_folder(output) as incoming:
        write_folder(incoming, written)
    return replace(result, output_dir=output)


def parser() -> argparse.ArgumentParser:
    parser = pipeline_parser(__doc__)
    cluster = parser.add_argument_group("Ray cluster")
    cluster.add_argument("--address", help="Ray cluster HOST:PORT (default: start a local Ray instance)")
    cluster.add_argument(
        "--cpus-per-worker", type=float, default=1, help="CPUs (and torch threads) per search actor (default: 1)"
    )
    cluster.add_argument(
        "--gpus-per-worker", type=float, default=0, help="GPUs per search actor, fractions allowed (default: 0)"
    )
    cluster.add_argument(
        "--max-retries", type=int, default=2, help="reruns of a trial whose actor or node died (default: 2)"
    )
    cluster.add_argument(
        "--finetune-on-cluster",
        action="store_true",
        help="fine-tune the super-network as one Ray task in one worker's resources",
    )
    cluster.add_argument(
        "--checkpoint", help="only search this super-network folder on the cluster (results in --output)"
    )
    add_run_folder_options(parser)
    return parser


def search_only(args: argparse.Namespace, factory: ExecutorFactory) -> None:
    """Stage 2 of an existing super-network on the cluster, like `nas-tune search`."""
    from nas_tune.search.run import search_checkpoint

    settings = search_settings(args)
    store, setup = search_checkpoint(
        args.checkpoint,
        args.output,
        settings,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        executor_factory=factory,
    )
    print_search_summary(store.run_dir, setup.data.task.metric)


def run(args: argparse.Namespace) -> Path:
    """The search alone (--checkpoint) or the whole pipeline on the cluster; the run folder it wrote."""
    if args.checkpoint:
        refuse_existing_output(
            args.output,
            resume=args.resume,
            overwrite=args.overwrite,
            what="a search or baseline run",
            markers=SEARCH_MARKERS,
        )
    else:
        refuse_existing_output(
            args.output, resume=args.resume, overwrite=args.overwrite, what="a run", resume_may_start=True
        )
        config = pipeline_config(args)
    from nas_tune.pipeline import run_pipeline
    from nas_tune.search.ray_executor import connect, ray_executor
    from nas_tune.supernet.run import finetune_supernet

    factory = ray_executor(args.address, args.cpus_per_worker, args.gpus_per_worker, args.max_retries)
    connect(args.address, num_cpus=args.workers * args.cpus_per_worker, num_gpus=args.workers * args.gpus_per_worker)
    if args.checkpoint:
        search_only(args, factory)
        return Path(args.output)
    finetune = (
        partial(finetune_on_cluster, num_cpus=args.cpus_per_worker, num_gpus=args.gpus_per_worker)
        if args.finetune_on_cluster
        else finetune_supernet
    )
    result = run_pipeline(
        config, args.output, resume=args.resume, overwrite=args.overwrite, finetune=finetune, executor_factory=factory
    )
    print_pipeline_result(result)
    return result.output


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = parse_pipeline_args(options, argv)
    quiet_libraries()
    try:
        output = run(args)
    except UserError as error:
        print(f"ray_cluster.py: error: {error}", file=sys.stderr)
        return 2
    save_run_config(options, args, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
