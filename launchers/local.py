"""Run the whole nas-tune pipeline on this machine: super-network fine-tuning, search, export.

python launchers/local.py --dataset rte            # default budget (12.5 min measured on 2 idle CPU cores)
python launchers/local.py --dataset rte --quick    # a first look (36 s measured)
python launchers/local.py --config runs/rte-quick/run.yaml --output runs/rte-again   # the same run again
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
from nas_tune.cli.run_config import save_run_config
from nas_tune.errors import UserError


def parser() -> argparse.ArgumentParser:
    parser = pipeline_parser(__doc__)
    add_run_folder_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser()
    args = parse_pipeline_args(options, argv)
    quiet_libraries()
    try:
        refuse_existing_output(
            args.output, resume=args.resume, overwrite=args.overwrite, what="a run", resume_may_start=True
        )  # the pipeline's own guard, before the slow imports
        config = pipeline_config(args)
        from nas_tune.pipeline import run_pipeline

        result = run_pipeline(config, args.output, resume=args.resume, overwrite=args.overwrite)
    except UserError as error:
        print(f"local.py: error: {error}", file=sys.stderr)
        return 2
    save_run_config(options, args, result.output)
    print_pipeline_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
