"""`nas-tune evaluate`: score one sub-network of a model on a task split."""

from __future__ import annotations

import argparse
import json

from nas_tune.cli.options import (
    add_data_options,
    add_latency_options,
    add_model_options,
    add_search_space_option,
    data_config,
    latency_settings,
    parse_config,
)
from nas_tune.settings import EVAL_BATCH_SIZE, SPLITS, positive_int


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score one sub-network (task metric, error, parameters, FLOPs, latency)",
        description="Score one sub-network of a (fine-tuned) model on a task split without changing the model.",
    )
    add_model_options(parser)
    add_data_options(parser)
    add_search_space_option(parser)
    parser.add_argument(
        "--config",
        default="largest",
        help="sub-network as JSON, a JSON file, 'largest' or 'smallest' (default: largest)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="validation",
        help="validation (carved from train; what search sees) or test (GLUE dev)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=EVAL_BATCH_SIZE,
        help=f"evaluation batch size (default: {EVAL_BATCH_SIZE})",
    )
    parser.add_argument(
        "--latency", action="store_true", help="also measure latency of the sliced sub-network (see --latency-*)"
    )
    add_latency_options(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    latency = latency_settings(args) if args.latency else None
    from nas_tune.evaluate.setup import build_evaluator

    setup = build_evaluator(
        args.model,
        data_config(args, args.seed),
        args.search_space,
        split=args.split,
        max_seq_length=args.max_seq_length,
        batch_size=args.batch_size,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        pooling=args.pooling,
    )
    config = parse_config(args.config, setup.evaluator.search_space)
    result = setup.evaluator.evaluate(config, latency=latency)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"task {setup.data.task.name} ({args.split}, {result.num_examples} examples) from {setup.data.source}")
    print(f"model {setup.loaded.source}")
    for name, value in result.metrics.items():
        print(f"  {name:22s} {value:.4f}")
    print(f"  {'layer params':22s} {result.layer_params:,} ({result.layer_fraction:.1%} of the layers)")
    print(f"  {'total params':22s} {result.total_params:,} ({result.total_fraction:.1%} of the model)")
    print(f"  {'GFLOPs / sequence':22s} {result.flops / 1e9:.3f}")
    if result.latency_seconds is not None:
        print(f"  {f'latency (batch {latency.batch_size})':22s} {result.latency_seconds * 1000:.1f} ms")
    return 0
