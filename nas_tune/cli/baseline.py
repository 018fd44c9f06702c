"""`nas-tune baseline NAME`: prune with a reference method; the run folder reads like a search run."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from nas_tune.cli.options import (
    add_data_options,
    add_model_options,
    add_search_space_option,
    data_config,
    positive_int,
    refuse_existing_output,
)
from nas_tune.cli.search import add_search_options, search_settings
from nas_tune.errors import UserError
from nas_tune.settings import BASELINE_NAMES, DEFAULT_BUDGETS, LAYER_CHOICES, BaselineSettings

if TYPE_CHECKING:
    from nas_tune.data import DataConfig

DEFAULTS = BaselineSettings()
SPLIT_FIELDS = ("dataset", "train_file", "validation_fraction", "max_validation_samples", "seed")  # what fixes the validation split


def parse_budgets(text: str | None) -> tuple[float, ...]:
    if text is None:
        return DEFAULT_BUDGETS
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--budgets must be comma-separated fractions such as 0.25,0.5,0.75, got {text!r}.") from None


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="prune with a baseline method (layer_drop, importance, rfp, standard_nas)",
        description="Prune with a reference method and store every pruned model as a trial row, so `nas-tune report` "
                    "and the Pareto code compare it with a search. importance, rfp and layer_drop --layer-choice block_influence "
                    "prune a fine-tuned model (--model CKPT; on text, the pre-trained causal LM itself); layer_drop --layer-choice "
                    "top and standard_nas fine-tune what they keep of a pre-trained model.",
    )
    parser.add_argument("name", metavar="NAME", help=f"one of: {', '.join(BASELINE_NAMES)}")
    add_model_options(parser)
    add_data_options(parser)
    group = parser.add_argument_group("baselines")
    group.add_argument("--budgets", help="fractions of the layer parameters to keep, comma-separated, each in (0, 1) "
                                         f"(default: {','.join(map(str, DEFAULT_BUDGETS))})")
    group.add_argument("--num-samples", type=positive_int, default=DEFAULTS.num_samples,
                       help=f"importance/rfp: training examples for mask gradients; layer_drop block_influence: for the similarities (default: {DEFAULTS.num_samples}, at least 128)")
    group.add_argument("--tune-samples", type=positive_int, default=DEFAULTS.tune_samples,
                       help=f"rfp: training examples for the least-squares mask tuning (default: {DEFAULTS.tune_samples})")
    group.add_argument("--layer-choice", choices=LAYER_CHOICES, default=DEFAULTS.layer_choice,
                       help="layer_drop: which layers to drop. top: the top layers, then fine-tune what is kept (Sajjad et al.); "
                            "block_influence: the layers whose output hidden states are most like their input (mean cosine "
                            "on --num-samples training examples), no retraining (ShortGPT) (default: %(default)s)")
    group.add_argument("--epochs", type=int, help="fine-tuning epochs: layer_drop (default: 3 for --layer-choice top, 0 = no "
                                                  "retraining for block_influence) and standard_nas per trial (default: 1)")
    group.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size, help=f"(default: {DEFAULTS.batch_size})")
    group.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"fine-tuning learning rate (default: {DEFAULTS.lr})")
    group.add_argument("--export", action="store_true", help="also write every pruned model to OUTPUT/models/")
    add_search_options(parser)
    add_search_space_option(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="run folder: metadata.json, trials.jsonl, trials.csv, pareto.*")
    parser.add_argument("--resume", action="store_true", help="continue a killed run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --output")
    parser.set_defaults(run=run)


def check_checkpoint_split(model: str | None, data: DataConfig) -> None:
    """A nas-tune checkpoint was trained on part of the training file: score it on its own validation split."""
    from nas_tune.supernet import SUPERNET_FILE, read_supernet_meta

    if model is None or not (Path(model) / SUPERNET_FILE).is_file():
        return
    trained = read_supernet_meta(model)["options"].get("data", {})
    ours = asdict(data)
    for name in SPLIT_FIELDS if trained else ():
        if trained.get(name) != ours[name]:
            raise UserError(f"{model} was fine-tuned with {name}={trained.get(name)!r} but this run uses {ours[name]!r}, so its "
                            f"validation split would overlap the checkpoint's training data; pass the checkpoint's data options.")


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(args.output, resume=args.resume, overwrite=args.overwrite, what="a baseline run", marker="metadata.json")
    settings = BaselineSettings(
        budgets=parse_budgets(args.budgets), num_samples=args.num_samples, tune_samples=args.tune_samples, epochs=args.epochs,
        layer_choice=args.layer_choice,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, search_space=args.search_space, search=search_settings(args),
        export=args.export,
    )
    data = data_config(args, args.seed)
    from nas_tune.baselines import baseline_class, load_inputs, run_baseline
    from nas_tune.report.summary import format_table, report_run

    cls = baseline_class(args.name)
    check_checkpoint_split(args.model, data)
    inputs = load_inputs(args.model, data, max_seq_length=args.max_seq_length, seed=args.seed, trust_remote_code=args.trust_remote_code)
    store = run_baseline(cls(inputs, settings), args.output, resume=args.resume, overwrite=args.overwrite)
    report = report_run(store.run_dir)
    print(format_table(report.front, inputs.task.metric))
    print(f"{args.name}: {len(report.trials)} pruned models, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}")
    print(f"results in {store.run_dir} (trials.csv, pareto.csv, pareto.png)")
    return 0
