"""Command-line flags generated from the settings dataclasses, and the dataclasses built back from parsed flags.

A field declared with `nas_tune.settings.option` becomes `--field-name` with its type, choices, default and help;
`--help` therefore prints the default the run really uses. A field shared by several dataclasses (`seed`,
`eval_batch_size`) is one flag whose value reaches all of them. Sequences stay comma-separated text in the parsed
namespace (as typed, as SageMaker hyper-parameters carry them) and are split when the dataclass is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from nas_tune.errors import UserError
from nas_tune.settings import positive_int

T = TypeVar("T")
SEQUENCES = (list, tuple)


def _declared(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every field of `cls` declared with `option`."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if "help" in f.metadata]


def _without_none(hint: Any) -> Any:
    """`int` for `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _as_text(value: Any) -> Any:
    """A sequence default as the comma-separated text the flag takes."""
    return ",".join(map(str, value)) if isinstance(value, SEQUENCES) else value


def _shown(default: Any) -> bool:
    """Whether `--help` states the default: not for unset values, off switches and empty sequences."""
    return default is not None and default is not False and default not in ((), [], "")


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: tuple[str, ...] | None = None,
    skip: tuple[str, ...] = (),
    defaults: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> None:
    """Add a flag for each `option` field of `cls` (only / skip: field names) that `parser` does not have yet.

    `defaults` replaces a field's default on this command line (the launchers' shorter runs); `prefix` names
    the flags of a nested setting (`latency_` gives --latency-repeats).
    """
    defaults = defaults or {}
    for f, hint in _declared(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        dest = prefix + f.name
        flag = "--" + dest.replace("_", "-")
        if flag in parser._option_string_actions:  # declared by an earlier dataclass: one flag feeds both
            continue
        default = defaults.get(f.name, _default(f))
        help_text = f.metadata["help"]
        if _shown(default) and "default" not in help_text:
            help_text += f" (default: {_as_text(default)})"
        kind = _without_none(hint)
        if kind is bool:
            parser.add_argument(flag, dest=dest, action="store_true", default=default, help=help_text)
            continue
        sequence = typing.get_origin(kind) in SEQUENCES
        parse = f.metadata["parse"] or (str if sequence else positive_int if kind is int else kind)
        parser.add_argument(
            flag, dest=dest, type=parse, default=_as_text(default), choices=f.metadata["choices"], help=help_text
        )


def _split(text: str, hint: Any, flag: str) -> Any:
    """Comma-separated `text` as the sequence type `hint` (tuple[float, ...], list[str]); only numbers can be
    wrong, and the one list of numbers is --budgets."""
    container, (item, *_) = typing.get_origin(hint), typing.get_args(hint)
    try:
        return container(item(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"{flag} must be comma-separated fractions such as 0.25,0.5,0.75, got {text!r}.") from None


def from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "", **values: Any) -> T:
    """`cls` from the parsed flags named like its fields (with `prefix`); `values` are given directly and win."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values or not hasattr(args, prefix + f.name):
            continue
        value = getattr(args, prefix + f.name)
        kind = _without_none(hints[f.name])
        if isinstance(value, str) and typing.get_origin(kind) in SEQUENCES:
            value = _split(value, kind, "--" + (prefix + f.name).replace("_", "-"))
        values[f.name] = value
    return cls(**values)
