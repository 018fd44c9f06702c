"""Latency of the masked super-network vs. the exported (physically smaller) model, side by side.

For MiniLM, sub-networks of the `medium`-style shape (all layers, uniformly fewer heads and neurons)
at about 25 / 50 / 75 % of the layer parameters; batch 1 and 32, sequence 128. Both are timed in
the same process, interleaved, so the ratio is fair whatever the machine.

    python benchmarks/export_speed.py [--repeats 10] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from nas_tune.cli import quiet_libraries
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.metrics import count_parameters, measure_latency
from nas_tune.models import SubNetwork, load_model

RESULTS = Path(__file__).parent / "results"


def subnetwork_at(shape, fraction: float) -> SubNetwork:
    """All layers with round(fraction * H) heads and round(fraction * F) neurons each."""
    heads = max(1, round(fraction * shape.num_heads))
    units = max(1, round(fraction * shape.ffn_size))
    return SubNetwork.first_k(shape, shape.num_layers, [heads] * shape.num_layers, [units] * shape.num_layers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args(argv)
    quiet_libraries()
    torch.set_num_threads(args.threads)
    loaded = load_model(None, 2)
    model, adapter = loaded.model, loaded.adapter
    shape = adapter.shape(model)
    rows = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        subnet = subnetwork_at(shape, fraction)
        size = count_parameters(model, adapter, subnet)
        exported = adapter.extract(model, subnet).eval()
        for batch_size in (1, 32):
            timing = dict(batch_size=batch_size, seq_len=args.seq_len, repeats=args.repeats)
            masked_runs, exported_runs = [], []
            for _ in range(args.rounds):  # alternate, and keep each side's best median: robust to load bursts
                with adapter.masked(model, subnet):
                    masked_runs.append(measure_latency(model, **timing))
                exported_runs.append(measure_latency(exported, **timing))
            masked, small = min(masked_runs), min(exported_runs)
            rows.append({"target": fraction, "layer_fraction": round(size.layer_fraction, 4), "total_fraction": round(size.total_fraction, 4),
                         "batch_size": batch_size, "masked_ms": round(masked * 1000, 2), "exported_ms": round(small * 1000, 2),
                         "speedup": round(masked / small, 2)})
            print(rows[-1], file=sys.stderr)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "export_speed.csv", table.to_csv(index=False))
    atomic_write_json(RESULTS / "export_speed.json", {"command": "python benchmarks/export_speed.py " + " ".join(argv or sys.argv[1:]),
                                                      "threads": args.threads, "seq_len": args.seq_len, "rows": json.loads(table.to_json(orient="records"))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
