"""Option groups shared by every command and launcher: one vocabulary, one place that defines it.

Parsers import only `nas_tune.settings` (no torch), so `--help` and bad options answer at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from nas_tune.errors import UserError
from nas_tune.settings import DEFAULT_MODEL, SEARCH_SPACE_NAMES, TEXT_DIR_VARIABLE, is_text_dataset

if TYPE_CHECKING:
    from nas_tune.data import DataConfig
    from nas_tune.search_space import Config, SearchSpace

VALIDATION_CAP = 2048  # validation examples every trial is scored on, without a training budget


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def add_model_options(parser: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL) -> None:
    parser.add_argument("--model", default=default, help=f"Hugging Face model folder or hub name (default: the bundled {DEFAULT_MODEL})")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folder (off by default)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="rte", help="GLUE task (rte, mrpc, cola, stsb, sst2, qnli, mnli, qqp, wnli), 'custom', "
                                                         "or causal language modelling: 'text' (your files) or 'shakespeare'")
    group.add_argument("--data-dir", help="folder in the classic GLUE layout (<TASK>/train.tsv, dev.tsv); default: $GLUE_DIR, then the Hugging Face hub "
                                          f"(shakespeare: the folder holding shakespeare/; default ${TEXT_DIR_VARIABLE})")
    group.add_argument("--train-file", help="custom data: CSV/TSV/JSON/JSONL training file; --dataset text: a plain-text file")
    group.add_argument("--validation-file", help="custom data: held-out file used as the test split; --dataset text: the validation text "
                                                 "(default: a hold-out of the training paragraphs)")
    group.add_argument("--test-file", help="--dataset text: the test text (default: the validation text)")
    group.add_argument("--text-columns", help="custom data: one or two comma-separated text columns")
    group.add_argument("--label-column", default="label", help="custom data: label column (default: label)")
    group.add_argument("--validation-fraction", type=fraction, default=0.3, help="part of the training file held out for search (default: 0.3)")
    group.add_argument("--max-validation-samples", type=positive_int,
                       help=f"cap on the validation split every trial is scored on (default: {VALIDATION_CAP}, "
                            "or --max-train-samples when that is smaller)")
    group.add_argument("--max-train-samples", type=positive_int, help="subsample the training split (quick runs)")
    group.add_argument("--max-test-samples", type=positive_int, help="subsample the test split (default: all of it, "
                                                                      "or --max-train-samples when that is given)")
    group.add_argument("--max-seq-length", type=positive_int, default=128, help="tokens per example; language modelling: the block length (default: 128)")


def evaluation_caps(max_train: int | None, max_validation: int | None, max_test: int | None) -> tuple[int, int | None]:
    """Validation and test caps, proportionate to a small training budget unless given: a 200-example run should
    not score every trial on 2048 validation examples. Unset, the validation cap is min(2048, max_train) and the
    test cap max_train (no cap without a training budget)."""
    if max_validation is None:
        max_validation = min(VALIDATION_CAP, max_train or VALIDATION_CAP)
    return max_validation, max_test if max_test is not None else max_train


def data_config(args: argparse.Namespace, seed: int) -> DataConfig:
    from nas_tune.data import DataConfig

    max_validation, max_test = evaluation_caps(args.max_train_samples, args.max_validation_samples, args.max_test_samples)
    return DataConfig(
        dataset="custom" if args.train_file and not is_text_dataset(args.dataset) else args.dataset,
        data_dir=args.data_dir,
        train_file=args.train_file,
        validation_file=args.validation_file,
        test_file=args.test_file,
        text_columns=tuple(c.strip() for c in args.text_columns.split(",")) if args.text_columns else (),
        label_column=args.label_column,
        validation_fraction=args.validation_fraction,
        max_validation_samples=max_validation,
        max_train_samples=args.max_train_samples,
        max_test_samples=max_test,
        seed=seed,
    )


def add_search_space_option(parser: argparse.ArgumentParser, *, default: str | None = "small") -> None:
    parser.add_argument("--search-space", default=default, choices=list(SEARCH_SPACE_NAMES), help=f"sub-network search space (default: {default})")


def refuse_existing_output(output: str | Path, *, resume: bool, overwrite: bool, what: str, marker: str | None = None) -> None:
    """Refuse a folder that holds a run before any slow import or load (the stage checks again, in detail):
    `marker` is the file that says a run is there; without it, any content does."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them.")
    path = Path(output)
    taken = (path / marker).exists() if marker else path.is_dir() and any(path.iterdir())
    if taken and not (resume or overwrite):
        raise UserError(f"{path} already holds {what}; pass --resume to continue it, --overwrite to replace it, or another --output.")


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
