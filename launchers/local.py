"""Run the whole nas-tune pipeline on this machine: super-network fine-tuning, search, export.

    python launchers/local.py --dataset rte            # default budget (estimated ~30 min on 2 CPU cores)
    python launchers/local.py --dataset rte --quick    # a first look in a few minutes
"""

from __future__ import annotations

import argparse
import sys

from nas_tune.cli import quiet_libraries
from nas_tune.cli.options import refuse_existing_output
from nas_tune.cli.pipeline_options import (
    add_run_folder_options,
    parse_pipeline_args,
    pipeline_config,
    pipeline_parser,
    print_pipeline_result,
)
from nas_tune.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = pipeline_parser(__doc__)
    add_run_folder_options(parser)
    return parse_pipeline_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    try:
        refuse_existing_output(args.output, resume=args.resume, overwrite=args.overwrite, what="a run")  # before the slow imports
        from nas_tune.pipeline import run_pipeline

        result = run_pipeline(pipeline_config(args), args.output, resume=args.resume, overwrite=args.overwrite)
    except UserError as error:
        print(f"local.py: error: {error}", file=sys.stderr)
        return 2
    print_pipeline_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
