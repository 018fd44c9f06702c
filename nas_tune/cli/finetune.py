"""`nas-tune finetune`: train the super-network (stage 1)."""

from __future__ import annotations

import argparse

from nas_tune.cli.flags import add_flags, from_args
from nas_tune.cli.options import (
    add_data_options,
    add_model_options,
    add_search_space_option,
    data_config,
    refuse_existing_output,
)
from nas_tune.cli.run_config import add_config_option, save_run_config
from nas_tune.settings import FinetuneConfig, PipelineConfig


def add_finetune_options(parser: argparse.ArgumentParser, *, defaults: dict | None = None) -> None:
    """The super-network training flags (every `FinetuneConfig` field but the space, plus --reorder)."""
    group = parser.add_argument_group("super-network fine-tuning")
    add_flags(group, FinetuneConfig, skip=("search_space",), defaults=defaults)
    add_flags(group, PipelineConfig, only=("reorder",))


def finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    return from_args(FinetuneConfig, args)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune the super-network on a task (stage 1)",
        description="Fine-tune a pre-trained model on a task while sampling sub-networks, so all of them share the weights.",
    )
    add_model_options(parser)
    add_data_options(parser)
    add_search_space_option(parser)
    add_finetune_options(parser)
    two_stage = parser.add_argument_group("two-stage training (start from a standard fine-tuned model)")
    two_stage.add_argument(
        "--init-from",
        metavar="FINETUNED_DIR",
        help="start the super-network from this classifier, fine-tuned on the task from --model",
    )
    two_stage.add_argument(
        "--teacher",
        metavar="FINETUNED_DIR",
        help="distil every sub-network from this fixed fine-tuned classifier (strategies kd, sandwich_kd)",
    )
    parser.add_argument("--output", required=True, help="checkpoint folder to write")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    add_config_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(args.output, resume=args.resume, overwrite=args.overwrite, what="a super-network run")
    config = finetune_config(args)
    from nas_tune.supernet.run import finetune_supernet

    result = finetune_supernet(
        args.model,
        data_config(args, args.seed),
        config,
        args.output,
        max_seq_length=args.max_seq_length,
        resume=args.resume,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
        pooling=args.pooling,
        reorder=args.reorder,
        init_from=args.init_from,
        teacher=args.teacher,
    )
    save_run_config(args.command_parser, args, result.output_dir)
    print(f"super-network checkpoint written to {result.output_dir} ({result.steps} steps, {result.seconds:.0f} s)")
    for key, value in result.metrics.items():
        if key.startswith(("largest_", "smallest_")):
            print(f"  validation {key:28s} {value:.4f}")
    return 0
