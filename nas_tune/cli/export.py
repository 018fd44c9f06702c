"""`nas-tune export`: write one sub-network as a smaller Hugging Face model folder."""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

from nas_tune.cli.options import add_model_options, add_search_space_option, parse_config
from nas_tune.io import prepare_output_dir


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a sub-network as a physically smaller Hugging Face model",
        description="Slice a sub-network out of a (fine-tuned) model and save it with save_pretrained plus its tokenizer.",
    )
    add_model_options(parser)
    add_search_space_option(parser)
    parser.add_argument("--config", required=True, help="sub-network as JSON, a JSON file, 'largest' or 'smallest'")
    parser.add_argument("--output", required=True, help="folder to write (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    add_format_option(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.set_defaults(run=run)


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("pytorch", "onnx"),
        default="pytorch",
        help="onnx: also write model.onnx (dynamic batch and sequence axes) into the folder, checked in ONNX Runtime "
        "against the PyTorch model and timed beside it (needs the [onnx] extra)",
    )


def onnx_stage(args: argparse.Namespace, model, adapter, subnet, tokenizer):
    """With --format onnx, `subnet` of `model` exported to ONNX and checked before the folder is written; else a no-op."""
    if args.format != "onnx":
        return nullcontext()
    from nas_tune.export.onnx import staged_onnx

    return staged_onnx(adapter.extract(model, subnet), tokenizer, args.output)


def describe_onnx(result) -> str:
    timing = result.latency
    return (
        f"  ONNX: {result.path} (opset {result.opset}, logits within {result.max_abs_difference:.1g} of PyTorch); "
        f"batch {timing.batch_size} x {timing.seq_len} tokens: ONNX Runtime {timing.onnxruntime_ms:.2f} ms, PyTorch {timing.pytorch_ms:.2f} ms"
    )


def run(args: argparse.Namespace) -> int:
    prepare_output_dir(args.output, overwrite=args.overwrite)  # before the slow imports and load
    from nas_tune.export import export_subnetwork
    from nas_tune.models import load_model
    from nas_tune.search_space import make_search_space

    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code, pooling=args.pooling)
    space = make_search_space(args.search_space, loaded.adapter.shape(loaded.model))
    config = parse_config(args.config, space)
    subnet = space.to_subnetwork(config)
    with onnx_stage(args, loaded.model, loaded.adapter, subnet, loaded.tokenizer) as onnx:
        result = export_subnetwork(
            loaded.model,
            loaded.tokenizer,
            loaded.adapter,
            subnet,
            args.output,
            provenance={"source_model": loaded.source, "search_space": space.name, "config": config},
            overwrite=args.overwrite,
        )
        onnx_result = onnx.install(result.path) if onnx else None
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(result.path),
                    "layer_params": result.layer_params,
                    "layer_fraction": result.layer_fraction,
                    "total_params": result.total_params,
                    "needs_trust_remote_code": result.needs_remote_code,
                    "onnx": None
                    if onnx_result is None
                    else {
                        "path": str(onnx_result.path),
                        "opset": onnx_result.opset,
                        "max_abs_difference": onnx_result.max_abs_difference,
                        "latency": vars(onnx_result.latency),
                    },
                }
            )
        )
        return 0
    print(f"exported to {result.path}")
    print(
        f"  layer params {result.layer_params:,} ({result.layer_fraction:.1%} of the layers), total {result.total_params:,}"
    )
    auto_class = "AutoModelForCausalLM" if loaded.model.can_generate() else "AutoModelForSequenceClassification"
    how = f"{auto_class}.from_pretrained(path{', trust_remote_code=True' if result.needs_remote_code else ''})"
    print(f"  load it with {how}")
    if onnx_result is not None:
        print(describe_onnx(onnx_result))
    return 0
