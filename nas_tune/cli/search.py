"""`nas-tune search`: multi-objective sub-network search on a super-network checkpoint (stage 2)."""

from __future__ import annotations

import argparse

from nas_tune.cli.options import positive_int, refuse_existing_output
from nas_tune.settings import SEARCH_SPACE_NAMES, SEARCHER_NAMES, SearchSettings

DEFAULTS = SearchSettings()


def searcher_name(text: str) -> str:
    if text not in SEARCHER_NAMES:
        raise argparse.ArgumentTypeError(f"unknown searcher '{text}'; choose one of: {', '.join(sorted(SEARCHER_NAMES))}")
    return text


def add_search_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sub-network search")
    group.add_argument("--searcher", type=searcher_name, default=DEFAULTS.searcher, help=f"{', '.join(sorted(SEARCHER_NAMES))} (default: {DEFAULTS.searcher})")
    group.add_argument("--num-trials", type=positive_int, default=DEFAULTS.num_trials, help=f"evaluations (default: {DEFAULTS.num_trials})")
    group.add_argument("--time-budget", type=float, help="stop submitting trials after this many seconds")
    group.add_argument("--workers", type=positive_int, default=DEFAULTS.workers, help="parallel workers sharing the checkpoint (default: 1)")
    group.add_argument("--objectives", default="error,params", help="error,params (default) or error,params,latency")
    group.add_argument("--max-params", type=float, help="only sub-networks below this fraction of the layer parameters")


def search_settings(args: argparse.Namespace) -> SearchSettings:
    from nas_tune.search.objectives import parse_objectives

    return SearchSettings(searcher=args.searcher, num_trials=args.num_trials, time_budget=args.time_budget,
                          objectives=parse_objectives(args.objectives), seed=args.seed, max_params=args.max_params, workers=args.workers)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search sub-networks of a fine-tuned super-network (stage 2)",
        description="Multi-objective search (error vs. size, optionally latency); every trial is stored the moment it finishes.",
    )
    parser.add_argument("--checkpoint", required=True, help="super-network folder written by `nas-tune finetune`")
    add_search_options(parser)
    parser.add_argument("--search-space", choices=list(SEARCH_SPACE_NAMES), help="default: the space the checkpoint was trained for")
    parser.add_argument("--force", action="store_true", help="search a space the checkpoint was not trained for")
    parser.add_argument("--data-dir", help="GLUE folder (default: $GLUE_DIR, then the Hugging Face hub)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="evaluation batch size (default: 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="run folder for trials.jsonl, trials.csv, pareto.* and plots")
    parser.add_argument("--resume", action="store_true", help="continue a killed search in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace the search in --output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(args.output, resume=args.resume, overwrite=args.overwrite, what="a search", marker="metadata.json")
    settings = search_settings(args)
    from nas_tune.report.summary import format_table, report_run
    from nas_tune.search.run import search_checkpoint

    store, setup = search_checkpoint(args.checkpoint, args.output, settings, search_space=args.search_space, force=args.force,
                                     data_dir=args.data_dir, batch_size=args.batch_size, resume=args.resume,
                                     overwrite=args.overwrite)
    report = report_run(store.run_dir)
    print(format_table(report.front, setup.data.task.metric))
    print(f"{len(report.trials)} trials, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}")
    print(f"results in {store.run_dir} (trials.csv, pareto.csv, pareto.png, hypervolume.png)")
    return 0
