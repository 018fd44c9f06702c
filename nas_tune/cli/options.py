"""Option groups shared by every command and launcher: one vocabulary, one place that defines it.

Parsers import only `nas_tune.settings` (no torch), so `--help` and bad options answer at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from nas_tune.cli.flags import add_flags, from_args
from nas_tune.errors import UserError
from nas_tune.output_folder import check_output_folder, occupied
from nas_tune.settings import (
    DataConfig,
    FinetuneConfig,
    LatencySettings,
    PipelineConfig,
    is_text_dataset,
)

if TYPE_CHECKING:
    from nas_tune.search_space import Config, SearchSpace

VALIDATION_CAP = (
    DataConfig.max_validation_samples
)  # validation examples every trial is scored on, without a training budget


def add_model_options(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, PipelineConfig, only=("model", "trust_remote_code", "pooling"))


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data flags plus --max-seq-length; --max-validation-samples unset means `evaluation_caps` decides."""
    group = parser.add_argument_group("data")
    add_flags(group, DataConfig, defaults={"max_validation_samples": None})
    add_flags(group, PipelineConfig, only=("max_seq_length",))


def add_latency_options(parser: argparse.ArgumentParser) -> None:
    add_flags(parser.add_argument_group("latency objective"), LatencySettings, prefix="latency_")


def latency_settings(args: argparse.Namespace) -> LatencySettings:
    return from_args(LatencySettings, args, prefix="latency_")


def evaluation_caps(max_train: int | None, max_validation: int | None, max_test: int | None) -> tuple[int, int | None]:
    """Validation and test caps, proportionate to a small training budget unless given: a 200-example run should
    not score every trial on 2048 validation examples. Unset, the validation cap is min(2048, max_train) and the
    test cap max_train (no cap without a training budget)."""
    if max_validation is None:
        max_validation = min(VALIDATION_CAP, max_train or VALIDATION_CAP)
    return max_validation, max_test if max_test is not None else max_train


def data_config(args: argparse.Namespace, seed: int) -> DataConfig:
    max_validation, max_test = evaluation_caps(
        args.max_train_samples, args.max_validation_samples, args.max_test_samples
    )
    return from_args(
        DataConfig,
        args,
        dataset="custom" if args.train_file and not is_text_dataset(args.dataset) else args.dataset,
        max_validation_samples=max_validation,
        max_test_samples=max_test,
        seed=seed,
    )


def add_search_space_option(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, FinetuneConfig, only=("search_space",))


def refuse_existing_output(
    output: str | Path,
    *,
    resume: bool,
    overwrite: bool,
    what: str,
    markers: tuple[str, ...] = (),
    resume_may_start: bool = False,
) -> None:
    """The stage's own run-folder guard (`check_output_folder`), called before any slow import or load: `markers`
    are the files that say a run is there; without them, any content does. The stage checks again, in detail."""
    check_output_folder(
        output,
        holds_run=occupied(output, markers),
        what=what,
        resume=resume,
        overwrite=overwrite,
        resume_may_start=resume_may_start,
    )


def parse_config(text: str, space: SearchSpace) -> Config:
    """A config given as JSON, a JSON file, or the words 'largest'/'smallest'."""
    if text in ("largest", "smallest"):
        return space.largest() if text == "largest" else space.smallest()
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        config = json.loads(source)
    except json.JSONDecodeError:
        raise UserError(f"--config is neither JSON, a JSON file, 'largest' nor 'smallest': {text[:80]!r}.") from None
    if not isinstance(config, dict):
        raise UserError(f"--config must be a JSON object such as {json.dumps(space.smallest())[:80]}.")
    return space.validate(config)
