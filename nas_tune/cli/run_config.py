"""`--config RUN.yaml`: a run described by a file of option values, and saved back into the folder it wrote.

The file is flat: its keys are the command's flag names without the leading dashes (`max-train-samples: 256`,
underscores also accepted), its values what the flag takes (a list for a comma-separated flag, true/false for
a switch). It replaces the defaults, so a flag given on the command line wins over it. Where the run goes
(--output, --resume, --overwrite) is not part of it: the saved file repeats a run into a new folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from nas_tune import __version__
from nas_tune.io import atomic_write_text

RUN_FILE = "run.yaml"
NOT_IN_FILE = frozenset({"help", "version", "run_config", "output", "resume", "overwrite"})


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="run_config",
        metavar="RUN.yaml",
        help="take the options from a YAML file whose keys are this command's flag names without the dashes "
        f"(max-train-samples: 256); flags given here win over it; a finished run saves its options as {RUN_FILE}",
    )
    parser.set_defaults(command_parser=parser)  # `nas_tune.cli.main` re-parses a sub-command with the file's values


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a run file may set, by destination."""
    return {
        action.dest: action for action in parser._actions if action.option_strings and action.dest not in NOT_IN_FILE
    }


def _value(action: argparse.Action, key: str, value: Any, error) -> Any:
    """`value` from the file as the flag would have parsed it; `error` reports one sentence naming `key`."""
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            error(f"'{key}' is a switch: write true or false, not {value!r}")
        return value
    if value is None:
        if action.default is not None:
            error(f"'{key}' needs a value (its default is {action.default})")
        return None
    if isinstance(value, dict):
        error(f"'{key}' must be a single value or a list, not a mapping")
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    try:
        parsed = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError) as exc:
        error(f"'{key}': {exc or 'invalid value ' + repr(text)}")
    if action.choices is not None and parsed not in action.choices:
        error(f"'{key}' must be one of {', '.join(map(str, action.choices))}, not {text!r}")
    return parsed


def read_run_config(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """The option values in the run file `path`, checked like flags; any problem ends the command (exit 2) in one
    sentence, without the usage block argparse prints for a bad flag: the flags were fine."""

    def error(problem: str) -> None:
        parser.exit(2, f"{parser.prog}: error: --config {path}: {problem}.\n")

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        error(f"cannot be read ({exc.strerror or exc})")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        error("is not valid YAML" + (f" (line {mark.line + 1})" if mark else ""))
    if data is None:
        return {}
    if not isinstance(data, dict):
        error("must map option names to values, e.g. 'epochs: 2'")
    options = _options(parser)
    values = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in options:
            where = (
                "where the run goes is given on the command line"
                if dest in NOT_IN_FILE
                else f"see {parser.prog} --help"
            )
            error(f"unknown key '{key}' ({where})")
        values[dest] = _value(options[dest], key, value, error)
    return values


def save_run_config(parser: argparse.ArgumentParser, args: argparse.Namespace, folder: str | Path) -> Path:
    """Write every option value of this run (defaults included) as `folder`/run.yaml, atomically."""
    values = {dest.replace("_", "-"): getattr(args, dest) for dest in _options(parser)}
    path = Path(folder) / RUN_FILE
    header = f"# nas-tune {__version__}: `{parser.prog} --config {path} --output NEW` repeats this run\n"
    atomic_write_text(path, header + yaml.safe_dump(values, sort_keys=False))
    return path
