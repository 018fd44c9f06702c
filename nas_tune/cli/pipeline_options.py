"""What every pipeline launcher (local, Ray, SageMaker) shares: options, budgets, config, summary."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nas_tune.cli.finetune import add_finetune_options, finetune_config
from nas_tune.cli.options import add_data_options, add_model_options, add_search_space_option, data_config, positive_int
from nas_tune.cli.search import add_search_options, search_settings
from nas_tune.settings import RECIPES

if TYPE_CHECKING:
    from nas_tune.pipeline import PipelineConfig, PipelineResult

# A first look: small data, short sequences, one epoch, few trials.
QUICK = {"max_train_samples": 256, "max_validation_samples": 128, "max_test_samples": 128, "max_seq_length": 64,
         "epochs": 1, "batch_size": 16, "num_trials": 16}
# The default: about 30 minutes on a 2-core CPU with the bundled MiniLM on RTE (estimated from measured step times).
DEFAULT = {"epochs": 2, "max_seq_length": 128, "num_trials": 50}


def pipeline_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    add_data_options(parser)
    add_search_space_option(parser)
    add_finetune_options(parser)
    add_search_options(parser)
    parser.add_argument("--quick", action="store_true", help="tiny budget for a first look (" + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(**DEFAULT)
    return parser


def add_run_folder_options(parser: argparse.ArgumentParser) -> None:
    """Options of the launchers that run the whole pipeline where they are started (local, Ray)."""
    parser.add_argument("--output", help="run folder (default: runs/<dataset>[-quick])")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--repair", action="store_true",
                        help="before testing and exporting each pick, fit its kept heads/neurons' output scales to the full "
                             "super-network's layer outputs (least squares on 256 training examples, no retraining; "
                             "it lowered the test metric of super-network picks in benchmarks/paper_comparison.py)")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--recipe", choices=RECIPES, default="one_stage",
                        help="one_stage: the super-network is fine-tuned from the pre-trained model; two_stage: a standard "
                             "fine-tuning first (--epochs, strategy standard, in <output>/standard), then the super-network "
                             "starts from it and every sub-network is distilled from it (--strategy must distil: kd or "
                             "sandwich_kd); the cost of both stages is counted (default: %(default)s)")
    recipe.add_argument("--second-stage-steps", type=positive_int,
                        help="two_stage: super-network steps after the standard fine-tuning (default: one epoch)")


def parse_pipeline_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.quick:  # quick values become defaults, so options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if "output" in vars(args):
        args.output = args.output or f"runs/{args.dataset}{'-quick' if args.quick else ''}"
    return args


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    from nas_tune.pipeline import PipelineConfig

    return PipelineConfig(model=args.model, data=data_config(args, args.seed), finetune=finetune_config(args),
                          search=search_settings(args), max_seq_length=args.max_seq_length, reorder=args.reorder,
                          repair=args.repair, recipe=args.recipe, second_stage_steps=args.second_stage_steps)


def print_pipeline_result(result: PipelineResult) -> None:
    print()
    print(result.table)
    print()
    for item in result.exported:
        same = f" (the same sub-network as {item.same_as})" if item.same_as else ""
        print(f"{item.name:12s} {item.export.layer_fraction:6.1%} of the layers -> {item.export.path}{same}")
    print(f"\nrun folder: {result.output} (report.html, summary.json, supernet/, search/, models/); "
          f"`nas-tune show {result.output}` lists the picks")
