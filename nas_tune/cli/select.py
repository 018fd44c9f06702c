"""`nas-tune select`: export the best sub-network of a search run under a size or error budget."""

from __future__ import annotations

import argparse
import sys

from nas_tune.cli.export import add_format_option, describe_onnx, onnx_stage
from nas_tune.io import prepare_output_dir


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "select",
        help="export the best sub-network under a size or error budget",
        description="Pick the lowest-error sub-network within --max-params (or the smallest within --max-error), "
        "export it as a smaller model and score it on the test split.",
    )
    parser.add_argument(
        "run_dir", help="run folder: the pipeline's (e.g. runs/rte-quick) or the --output of `nas-tune search`"
    )
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-params", type=float, help="fraction of the layer parameters, e.g. 0.5")
    budget.add_argument("--max-error", type=float, help="validation error, e.g. 0.2")
    parser.add_argument("--output", required=True, help="folder for the exported model")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="fit the kept heads/neurons' output scales to the full model's layer outputs (rfp's least-squares mask tuning; no retraining)",
    )
    parser.add_argument("--data-dir", help="GLUE folder (default: $GLUE_DIR)")
    parser.add_argument(
        "--checkpoint",
        help="super-network folder, if it moved since the search (e.g. results downloaded from SageMaker)",
    )
    add_format_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_output_dir(args.output, overwrite=args.overwrite)  # before the slow imports and load
    from nas_tune.evaluate.setup import checkpoint_evaluator, read_checkpoint
    from nas_tune.pruning.repair import repair_subnetwork, repair_training_split
    from nas_tune.report.summary import load_run
    from nas_tune.select import base_model_name, config_of, export_pick, pick, test_evaluator

    store, metadata, trials = load_run(args.run_dir)
    row = pick(trials, max_params=args.max_params, max_error=args.max_error)
    checkpoint = args.checkpoint or metadata["checkpoint"]
    trained = read_checkpoint(checkpoint)
    max_seq_length = trained.max_seq_length
    setup = checkpoint_evaluator(trained, data_dir=args.data_dir, search_space=metadata["search_space"])
    provenance = {
        "checkpoint": str(checkpoint),
        "run_dir": str(store.run_dir),
        "base_model": base_model_name(trained.meta["base_model"]),
    }
    repaired = None
    if args.repair:
        subnet = setup.evaluator.search_space.to_subnetwork(config_of(row))
        repaired = repair_subnetwork(setup.loaded, subnet, repair_training_split(setup, max_seq_length))
        provenance["repair"] = repaired.summary()
    with onnx_stage(
        args,
        repaired.model if repaired else setup.loaded.model,
        setup.loaded.adapter,
        setup.evaluator.search_space.to_subnetwork(config_of(row)),
        setup.loaded.tokenizer,
    ) as onnx:
        chosen = export_pick(
            setup,
            test_evaluator(setup, max_seq_length),
            row,
            args.output,
            name="select",
            provenance=provenance,
            overwrite=args.overwrite,
            model=repaired.model if repaired else None,
        )
        onnx_result = onnx.install(chosen.export.path, seq_len=max_seq_length) if onnx else None
    metric = setup.data.task.metric
    print(
        f"trial {int(row['trial_id'])}: {row['params']:.1%} of the layer parameters, validation error {row['error']:.4f}, "
        f"test {metric} {chosen.test.metrics[metric]:.4f}, {chosen.test.latency_seconds * 1000:.1f} ms per sequence (batch 1)"
    )
    if chosen.no_better_than:
        print(
            f"warning: on the test split it is no better than {chosen.no_better_than}: it has not learnt the task",
            file=sys.stderr,
        )
    if repaired is not None:
        summary = repaired.summary()
        print(
            f"repaired: layer reconstruction error {summary['reconstruction_before']:.4g} -> {summary['reconstruction_after']:.4g}"
        )
    print(
        f"exported to {chosen.export.path}"
        + (" (load with trust_remote_code=True)" if chosen.export.needs_remote_code else "")
    )
    if onnx_result is not None:
        print(describe_onnx(onnx_result))
    return 0
