"""Is an exported sub-network as fast as a dense model of its shape? Export vs. dense vs. masked vs. ONNX Runtime.

For MiniLM, homogeneous sub-networks (every kept layer has the same heads and FFN width): all layers
with about 25 / 50 / 75 / 100 % of the heads and neurons, and the first half of the layers unpruned.
Each is exported to a folder (`export_subnetwork`), loaded back as a user would
(`from_pretrained`, `trust_remote_code` where the folder needs it) and timed against:

- **dense**: a freshly initialised stock `BertForSequenceClassification` of the same shape. Where the
  stock config describes the shape (all heads kept) it is built from that config alone; with fewer
  heads, whose size BERT's config cannot express, its attention projections are fresh `nn.Linear`
  of the kept width in the stock modules. export / dense is the overhead of pruning (goal <= 1.05).
- **masked**: the super-network restricted by hooks (what training uses): masked / export is the
  speed-up exporting buys.
- **ONNX Runtime**: the same export as `model.onnx` (`nas_tune.export.onnx`), timed against PyTorch
  on the same inputs and threads.

Batch 1 and 32, sequence 128. Every setting runs `--rounds` interleaved rounds (the order rotates per
round); ratios are medians of the per-round ratios, so load from other processes cancels out.

    python benchmarks/export_speed.py [--repeats 10] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    PreTrainedModel,
)

from nas_tune.cli import quiet_libraries
from nas_tune.errors import UserError
from nas_tune.export import export_subnetwork
from nas_tune.export.onnx import (
    ONNX_FILE,
    measure_onnx_latency,
    onnx_session,
    staged_onnx,
)
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.metrics import count_parameters, measure_latency
from nas_tune.models import SubNetwork, load_model
from nas_tune.models.subnetwork import ModelShape

RESULTS = Path(__file__).parent / "results"
BATCH_SIZES = (1, 32)


@dataclass(frozen=True)
class Shape:
    """A homogeneous sub-network: the first `layers` layers, each with `heads` heads and `units` FFN neurons."""

    name: str
    layers: int
    heads: int
    units: int

    def subnetwork(self, full: ModelShape) -> SubNetwork:
        return SubNetwork.first_k(full, self.layers, [self.heads] * full.num_layers, [self.units] * full.num_layers)


def shapes_of(full: ModelShape) -> list[Shape]:
    """Most telling first (the run writes its table after every shape): fewer heads, then stock-config shapes."""
    uniform = {
        f: Shape(
            f"all layers, {round(f * 100)} % heads+FFN",
            full.num_layers,
            max(1, round(f * full.num_heads)),
            max(1, round(f * full.ffn_size)),
        )
        for f in (0.25, 0.5, 0.75, 1.0)
    }
    half_depth = Shape("first half of the layers", full.num_layers // 2, full.num_heads, full.ffn_size)
    return [uniform[0.5], half_depth, uniform[0.25], uniform[1.0], uniform[0.75]]


def dense_reference(model: PreTrainedModel, full: ModelShape, shape: Shape, *, seed: int = 0) -> PreTrainedModel:
    """A freshly initialised stock BERT classifier of `shape`: no weights, code or memory layout from the export."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers, config.intermediate_size = shape.layers, shape.units
    torch.manual_seed(seed)
    dense = BertForSequenceClassification(config)
    if shape.heads < full.num_heads:  # the head size stays hidden / num_heads: only the attention width shrinks
        width = shape.heads * full.head_dim
        for layer in dense.bert.encoder.layer:
            attention = layer.attention
            attention.self.query, attention.self.key, attention.self.value = (
                nn.Linear(full.hidden_size, width) for _ in range(3)
            )
            attention.output.dense = nn.Linear(width, full.hidden_size)
    return dense.eval()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per measurement (after 3 warm-up ones)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forwards before each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument(
        "--onnx-seconds", type=float, default=1.0, help="minimum timing run per ONNX Runtime / PyTorch measurement"
    )
    args = parser.parse_args(argv)
    for name in ("repeats", "rounds", "threads", "seq_len", "onnx_seconds"):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    if args.warmup < 0:
        raise UserError(f"--warmup must be zero or more, got {args.warmup}.")
    return args


def time_setting(
    models: dict[str, PreTrainedModel], masked_context, session, input_names, args, batch_size: int
) -> dict[str, float]:
    """Interleaved rounds over masked / exported / dense, then ONNX Runtime vs. PyTorch; medians of per-round values."""
    timing = {"batch_size": batch_size, "seq_len": args.seq_len, "warmup": args.warmup, "repeats": args.repeats}
    names = ["masked", "exported", "dense"]
    rounds: list[dict[str, float]] = []
    for index in range(args.rounds):
        sample: dict[str, float] = {}
        for name in names[index % 3 :] + names[: index % 3]:
            if name == "masked":
                with masked_context():
                    sample[name] = measure_latency(models[name], **timing)
            else:
                sample[name] = measure_latency(models[name], **timing)
        onnx = measure_onnx_latency(
            models["exported"],
            session,
            input_names,
            batch_size=batch_size,
            seq_len=args.seq_len,
            min_run_time=args.onnx_seconds,
        )
        sample["onnx"], sample["onnx_pytorch"] = onnx.onnxruntime_ms / 1000, onnx.pytorch_ms / 1000
        rounds.append(sample)

    def median(key) -> float:
        return statistics.median(key(sample) for sample in rounds)

    return {
        "masked_ms": round(median(lambda s: s["masked"]) * 1000, 2),
        "exported_ms": round(median(lambda s: s["exported"]) * 1000, 2),
        "dense_ms": round(median(lambda s: s["dense"]) * 1000, 2),
        "export_over_dense": round(median(lambda s: s["exported"] / s["dense"]), 3),
        "masked_over_export": round(median(lambda s: s["masked"] / s["exported"]), 2),
        "onnx_ms": round(median(lambda s: s["onnx"]) * 1000, 2),
        "onnx_over_pytorch": round(median(lambda s: s["onnx"] / s["onnx_pytorch"]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UserError as error:
        print(f"export_speed.py: error: {error}", file=sys.stderr)
        return 2
    quiet_libraries()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    loaded = load_model(None, 2)
    model, adapter = loaded.model.eval(), loaded.adapter
    full = adapter.shape(model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="export_speed.") as workdir:
        for shape in shapes_of(full):
            subnet = shape.subnetwork(full)
            size = count_parameters(model, adapter, subnet)
            folder = Path(workdir) / f"{shape.layers}x{shape.heads}x{shape.units}"
            result = export_subnetwork(model, loaded.tokenizer, adapter, subnet, folder)
            exported = AutoModelForSequenceClassification.from_pretrained(
                folder, trust_remote_code=result.needs_remote_code
            ).eval()
            with staged_onnx(exported, loaded.tokenizer, folder) as staged:
                onnx = staged.install(folder, seq_len=args.seq_len)
            session = onnx_session(folder / ONNX_FILE, args.threads)
            models = {"masked": model, "exported": exported, "dense": dense_reference(model, full, shape)}
            for batch_size in BATCH_SIZES:
                row = {
                    "shape": shape.name,
                    "layers": shape.layers,
                    "heads": shape.heads,
                    "units": shape.units,
                    "layer_fraction": round(size.layer_fraction, 4),
                    "total_fraction": round(size.total_fraction, 4),
                    "remote_code": result.needs_remote_code,
                    "batch_size": batch_size,
                    **time_setting(
                        models,
                        functools.partial(adapter.masked, model, subnet),
                        session,
                        onnx.input_names,
                        args,
                        batch_size,
                    ),
                }
                rows.append(row)
                print(row, file=sys.stderr)
            write_results(rows, args, argv, load_before)  # after every shape: a stopped run keeps what it measured
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def write_results(
    rows: list[dict], args: argparse.Namespace, argv: list[str] | None, load_before: tuple[float, ...]
) -> None:
    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "export_speed.csv", table.to_csv(index=False))
    atomic_write_json(
        RESULTS / "export_speed.json",
        {
            "command": "python benchmarks/export_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
            **vars(args),
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "rows": json.loads(table.to_json(orient="records")),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
