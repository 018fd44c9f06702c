"""`nas-tune finetune`: train the super-network (stage 1)."""

from __future__ import annotations

import argparse

from nas_tune.cli.options import (
    add_data_options,
    add_model_options,
    add_search_space_option,
    data_config,
    positive_int,
    refuse_existing_output,
)
from nas_tune.settings import (
    HEAD_INIT_CHOICES,
    REORDER_CHOICES,
    SAMPLING_CHOICES,
    STRATEGY_ALIASES,
    STRATEGY_NAMES,
    FinetuneConfig,
)

DEFAULTS = FinetuneConfig()


def add_finetune_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("super-network fine-tuning")
    group.add_argument("--strategy", default=DEFAULTS.strategy, choices=[*STRATEGY_NAMES, *STRATEGY_ALIASES],
                       help=f"how sub-networks are sampled while training (default: {DEFAULTS.strategy}; one_shot is an alias)")
    group.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, help="(default: %(default)s)")
    group.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size, help="(default: %(default)s)")
    group.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"peak AdamW learning rate, linear warm-up and decay (default: {DEFAULTS.lr})")
    group.add_argument("--num-random-subnets", type=int, help="random sub-networks per step (default: 1 for random/kd, 2 for sandwich)")
    group.add_argument("--temperature", type=float, default=DEFAULTS.temperature, help=f"in-place distillation temperature (default: {DEFAULTS.temperature})")
    group.add_argument("--kd-weight", type=float, default=DEFAULTS.kd_weight, help=f"weight of the distillation loss (default: {DEFAULTS.kd_weight})")
    group.add_argument("--reorder", choices=REORDER_CHOICES, default="none",
                       help="'importance': sort each layer's heads/neurons best-first before training, so 'keep the first k' keeps the best k")
    group.add_argument("--save-steps", type=positive_int, default=DEFAULTS.save_steps, help=f"save a resumable state every N steps (default: {DEFAULTS.save_steps})")
    group.add_argument("--max-steps", type=positive_int, help="stop after N steps; the learning-rate schedule ends there (default: all epochs)")
    group.add_argument("--head-init", choices=HEAD_INIT_CHOICES, default=DEFAULTS.head_init,
                       help="a fresh task head starts at the label prior (mean label for regression, log class frequencies) "
                            f"or at zero as transformers creates it (default: {DEFAULTS.head_init})")
    group.add_argument("--sampling", choices=SAMPLING_CHOICES, default=DEFAULTS.sampling,
                       help="random sub-networks: uniform over the search space, or stratified so every size bin gets the same "
                            f"share of steps (default: {DEFAULTS.sampling})")
    group.add_argument("--min-params", type=float, default=DEFAULTS.min_params,
                       help=f"random sub-networks keep at least this fraction of the layer parameters (default: {DEFAULTS.min_params})")


def finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        strategy=args.strategy, search_space=args.search_space, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, num_random_subnets=args.num_random_subnets, temperature=args.temperature, kd_weight=args.kd_weight,
        save_steps=args.save_steps, max_steps=args.max_steps, head_init=args.head_init, sampling=args.sampling,
        min_params=args.min_params,
    )


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
    two_stage.add_argument("--init-from", metavar="FINETUNED_DIR",
                           help="start the super-network from this classifier, fine-tuned on the task from --model")
    two_stage.add_argument("--teacher", metavar="FINETUNED_DIR",
                           help="distil every sub-network from this fixed fine-tuned classifier (strategies kd, sandwich_kd)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="checkpoint folder to write")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(args.output, resume=args.resume, overwrite=args.overwrite, what="a super-network run")
    config = finetune_config(args)
    from nas_tune.supernet.run import finetune_supernet

    result = finetune_supernet(
        args.model, data_config(args, args.seed), config, args.output, max_seq_length=args.max_seq_length,
        resume=args.resume, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code, reorder=args.reorder,
        init_from=args.init_from, teacher=args.teacher,
    )
    print(f"super-network checkpoint written to {result.output_dir} ({result.steps} steps, {result.seconds:.0f} s)")
    for key, value in result.metrics.items():
        if key.startswith(("largest_", "smallest_")):
            print(f"  validation {key:28s} {value:.4f}")
    return 0
