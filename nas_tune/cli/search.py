"""`nas-tune search`: multi-objective sub-network search on a super-network checkpoint (stage 2)."""

from __future__ import annotations

import argparse

from nas_tune.cli.flags import add_flags, from_args
from nas_tune.cli.options import add_latency_options, latency_settings, refuse_existing_output
from nas_tune.cli.run_config import add_config_option, save_run_config
from nas_tune.settings import EVAL_BATCH_SIZE, SEARCH_SPACE_NAMES, DataConfig, SearchSettings, positive_int

SEARCH_MARKERS = ("metadata.json", "trials.jsonl")  # what a search or baseline run folder holds from its start


def add_search_options(parser: argparse.ArgumentParser, *, defaults: dict | None = None) -> None:
    add_flags(parser.add_argument_group("sub-network search"), SearchSettings, defaults=defaults)


def search_settings(args: argparse.Namespace) -> SearchSettings:
    from nas_tune.search.objectives import parse_objectives

    return from_args(SearchSettings, args, objectives=parse_objectives(args.objectives))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search sub-networks of a fine-tuned super-network (stage 2)",
        description="Multi-objective search (error vs. size, optionally latency); every trial is stored the moment it finishes.",
    )
    parser.add_argument("--checkpoint", required=True, help="super-network folder written by `nas-tune finetune`")
    add_search_options(parser)
    add_latency_options(parser)
    parser.add_argument(
        "--search-space", choices=SEARCH_SPACE_NAMES, help="default: the space the checkpoint was trained for"
    )
    parser.add_argument("--force", action="store_true", help="search a space the checkpoint was not trained for")
    add_flags(parser, DataConfig, only=("data_dir",))
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=EVAL_BATCH_SIZE,
        help=f"evaluation batch size (default: {EVAL_BATCH_SIZE})",
    )
    parser.add_argument("--output", required=True, help="run folder for trials.jsonl, trials.csv, pareto.* and plots")
    parser.add_argument("--resume", action="store_true", help="continue a killed search in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace the search in --output")
    add_config_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(
        args.output,
        resume=args.resume,
        overwrite=args.overwrite,
        what="a search or baseline run",
        markers=SEARCH_MARKERS,
    )
    settings, latency = search_settings(args), latency_settings(args)
    from nas_tune.search.run import search_checkpoint

    store, setup = search_checkpoint(
        args.checkpoint,
        args.output,
        settings,
        search_space=args.search_space,
        force=args.force,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        latency=latency,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    save_run_config(args.command_parser, args, store.run_dir)
    print_search_summary(store.run_dir, setup.data.task.metric)
    return 0


def print_search_summary(run_dir, metric: str) -> None:
    """The front, its size and hypervolume, and where the files are: what a finished search prints, wherever it ran."""
    from nas_tune.report.summary import format_table, report_run

    report = report_run(run_dir)
    print(format_table(report.front, metric))
    print(f"{len(report.trials)} trials, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}")
    print(f"results in {run_dir} (trials.csv, pareto.csv, pareto.png, hypervolume.png)")
