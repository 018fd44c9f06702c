"""Run the whole nas-tune pipeline on this machine: super-network fine-tuning, search, export.

    python launchers/local.py --dataset rte            # default budget (~30 min on 2 CPU cores)
    python launchers/local.py --dataset rte --quick    # a first look in a few minutes
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from nas_tune.cli import quiet_libraries
from nas_tune.cli.finetune import add_finetune_options, finetune_config
from nas_tune.cli.options import add_data_options, add_model_options, add_search_space_option, data_config
from nas_tune.cli.search import add_search_options, search_settings
from nas_tune.errors import UserError
from nas_tune.pipeline import PipelineConfig, run_pipeline

# A first look: small data, short sequences, one epoch, few trials.
QUICK = {"max_train_samples": 256, "max_validation_samples": 128, "max_test_samples": 128, "max_seq_length": 64,
         "epochs": 1, "batch_size": 16, "num_trials": 16}
# The default fits ~30 minutes on a 2-core CPU with the bundled MiniLM on RTE.
DEFAULT = {"epochs": 2, "max_seq_length": 128, "num_trials": 50}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    add_data_options(parser)
    add_search_space_option(parser)
    add_finetune_options(parser)
    add_search_options(parser)
    parser.add_argument("--quick", action="store_true", help="tiny budget for a first look (" + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="run folder (default: runs/<dataset>[-quick])")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.set_defaults(**DEFAULT)
    args = parser.parse_args(argv)
    if args.quick:  # quick values become defaults, so options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    args.output = args.output or f"runs/{args.dataset}{'-quick' if args.quick else ''}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    try:
        config = PipelineConfig(model=args.model, data=data_config(args, args.seed), finetune=finetune_config(args),
                                search=search_settings(args), max_seq_length=args.max_seq_length, reorder=args.reorder)
        result = run_pipeline(config, args.output, resume=args.resume, overwrite=args.overwrite)
    except UserError as error:
        print(f"local.py: error: {error}", file=sys.stderr)
        return 2
    print()
    print(result.table)
    print()
    for item in result.exported:
        print(f"{item.name:12s} {item.export.layer_fraction:6.1%} of the layers -> {item.export.path}")
    print(f"\nrun folder: {result.output} (summary.json, supernet/, search/trials.csv, search/pareto.csv, search/pareto.png, models/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
