"""`nas-tune` command line: one sub-command per stage; user errors exit 2 with one sentence."""

from __future__ import annotations

import argparse
import os
import sys

from nas_tune import __version__
from nas_tune.errors import UserError

COMMANDS = ("finetune", "search", "report", "show", "select", "evaluate", "export", "baseline")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = argparse.ArgumentParser(
        prog="nas-tune", description="Structural pruning of pre-trained transformers by multi-objective NAS."
    )
    parser.add_argument("--version", action="version", version=f"nas-tune {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"nas_tune.cli.{name}").add_parser(subparsers)
    return parser


def quiet_libraries() -> None:
    """Library chatter (load reports, weight-loading bars) hides what the user asked for. Said through the
    environment, so transformers is not imported before a command needs it (fast `--help` and refusals)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (e.g. `main` called from Python): tell it directly
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, over the sub-command's --config file (finetune, search, baseline), over the defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run_config", None):
        from nas_tune.cli.run_config import read_run_config

        args.command_parser.set_defaults(**read_run_config(args.command_parser, args.run_config))
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    try:
        return args.run(args) or 0
    except UserError as error:
        print(f"nas-tune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas-tune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
