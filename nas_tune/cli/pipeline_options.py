"""What every pipeline launcher (local, Ray, SageMaker) shares: options, budgets, config, summary."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nas_tune.cli.finetune import add_finetune_options, finetune_config
from nas_tune.cli.flags import add_flags, from_args
from nas_tune.cli.options import (
    add_data_options,
    add_latency_options,
    add_model_options,
    add_search_space_option,
    data_config,
    latency_settings,
)
from nas_tune.cli.run_config import add_config_option, read_run_config
from nas_tune.cli.search import add_search_options, search_settings
from nas_tune.settings import PipelineConfig

if TYPE_CHECKING:
    from nas_tune.pipeline import PipelineResult

# A first look: small data, short sequences, one epoch, few trials.
QUICK = {
    "max_train_samples": 256,
    "max_validation_samples": 128,
    "max_test_samples": 128,
    "max_seq_length": 64,
    "epochs": 1,
    "batch_size": 16,
    "num_trials": 16,
}
# The default: about 30 minutes on a 2-core CPU with the bundled MiniLM on RTE (estimated from measured step times);
# every other option keeps the default of its settings dataclass.
DEFAULT = {"epochs": 2}


def pipeline_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    add_data_options(parser)
    add_search_space_option(parser)
    add_finetune_options(parser, defaults=DEFAULT)
    add_search_options(parser, defaults=DEFAULT)
    add_latency_options(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget for a first look (" + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ")",
    )
    add_config_option(parser)
    return parser


def add_run_folder_options(parser: argparse.ArgumentParser) -> None:
    """Options of the launchers that run the whole pipeline where they are started (local, Ray)."""
    parser.add_argument("--output", help="run folder (default: runs/<dataset>[-quick])")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    add_flags(parser, PipelineConfig, only=("repair",))
    add_flags(parser.add_argument_group("recipe"), PipelineConfig, only=("recipe", "second_stage_steps"))


def parse_pipeline_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Flags over the --config file over the --quick budget over the defaults."""
    args = parser.parse_args(argv)
    from_file = read_run_config(parser, args.run_config) if args.run_config else {}
    if args.quick or from_file.get("quick"):
        parser.set_defaults(**QUICK)
    if args.quick or from_file:
        parser.set_defaults(**from_file)
        args = parser.parse_args(argv)
    if "output" in vars(args):
        args.output = args.output or f"runs/{args.dataset}{'-quick' if args.quick else ''}"
    return args


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return from_args(
        PipelineConfig,
        args,
        data=data_config(args, args.seed),
        finetune=finetune_config(args),
        search=search_settings(args),
        latency=latency_settings(args),
    )


def print_pipeline_result(result: PipelineResult) -> None:
    print()
    print(result.table)
    print()
    for item in result.exported:
        same = f" (the same sub-network as {item.same_as})" if item.same_as else ""
        print(f"{item.name:12s} {item.export.layer_fraction:6.1%} of the layers -> {item.export.path}{same}")
    print(
        f"\nrun folder: {result.output} (report.html, summary.json, supernet/, search/, models/); "
        f"`nas-tune show {result.output}` lists the picks"
    )
