"""`nas-tune baseline NAME`: prune with a reference method; the run folder reads like a search run."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nas_tune.cli.flags import add_flags, from_args
from nas_tune.cli.options import add_data_options, add_model_options, data_config, refuse_existing_output
from nas_tune.cli.run_config import add_config_option, save_run_config
from nas_tune.cli.search import SEARCH_MARKERS, add_search_options, search_settings
from nas_tune.errors import UserError
from nas_tune.settings import BASELINE_NAMES, BaselineSettings

if TYPE_CHECKING:
    from nas_tune.data import DataConfig

SPLIT_FIELDS = (
    "dataset",
    "train_file",
    "validation_fraction",
    "max_validation_samples",
    "seed",
)  # what fixes the validation split


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
    add_flags(parser.add_argument_group("baselines"), BaselineSettings)
    add_search_options(parser)
    parser.add_argument("--output", required=True, help="run folder: metadata.json, trials.jsonl, trials.csv, pareto.*")
    parser.add_argument("--resume", action="store_true", help="continue a killed run in --output")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --output")
    add_config_option(parser)
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
            raise UserError(
                f"{model} was fine-tuned with {name}={trained.get(name)!r} but this run uses {ours[name]!r}, so its "
                f"validation split would overlap the checkpoint's training data; pass the checkpoint's data options."
            )


def run(args: argparse.Namespace) -> int:
    refuse_existing_output(
        args.output,
        resume=args.resume,
        overwrite=args.overwrite,
        what="a search or baseline run",
        markers=SEARCH_MARKERS,
    )
    settings = from_args(BaselineSettings, args)  # its own flags checked before the search's, whose check loads torch
    settings = replace(settings, search=search_settings(args))
    data = data_config(args, args.seed)
    from nas_tune.baselines import baseline_class, load_inputs, run_baseline
    from nas_tune.report.summary import format_table, report_run

    cls = baseline_class(args.name)
    check_checkpoint_split(args.model, data)
    inputs = load_inputs(
        args.model,
        data,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        pooling=args.pooling,
    )
    store = run_baseline(cls(inputs, settings), args.output, resume=args.resume, overwrite=args.overwrite)
    save_run_config(args.command_parser, args, store.run_dir)
    report = report_run(store.run_dir)
    print(format_table(report.front, inputs.task.metric))
    print(
        f"{args.name}: {len(report.trials)} pruned models, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}"
    )
    print(f"results in {store.run_dir} (trials.csv, pareto.csv, pareto.png)")
    return 0
