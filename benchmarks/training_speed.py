"""Super-network training step: sub-networks masked at full size vs. sliced to their real size.

Same model, same batches, same sampled sub-networks, alternated in one run; the sliced view is what
the strategies use (identical function and gradients, see tests/test_models.py).

    python benchmarks/training_speed.py [--steps 6] [--batch-size 16] [--seq-len 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas_tune.cli import quiet_libraries
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.models import load_model
from nas_tune.search_space import make_search_space
from nas_tune.supernet import make_strategy

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--strategy", default="sandwich_kd")
    args = parser.parse_args(argv)
    quiet_libraries()
    loaded = load_model(None, 2)
    model, adapter = loaded.model.train(), loaded.adapter
    space = make_search_space("small", adapter.shape(model))
    ids = torch.randint(1000, 30000, (args.batch_size, args.seq_len), generator=torch.Generator().manual_seed(0))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 2, (args.batch_size,)),
    }
    times: dict[str, list[float]] = {"masked": [], "sliced": []}
    for step in range(args.steps + 1):
        for view in ("masked", "sliced"):
            strategy = make_strategy(args.strategy, adapter, space, np.random.default_rng(step))
            if view == "masked":
                strategy.adapter = type(
                    "MaskedAdapter", (), {"sliced": adapter.masked}
                )()  # same strategy, full-size view
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            strategy.step(model, batch, progress=0.5)
            if step:  # the first round warms up
                times[view].append(time.perf_counter() - start)
    rows = [
        {"view": v, "strategy": args.strategy, "median_step_seconds": round(statistics.median(t), 3)}
        for v, t in times.items()
    ]
    table = pd.DataFrame(rows)
    table["speedup_vs_masked"] = (table["median_step_seconds"].iloc[0] / table["median_step_seconds"]).round(2)
    print(table.to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "training_speed.csv", table.to_csv(index=False))
    atomic_write_json(
        RESULTS / "training_speed.json",
        {"command": "python benchmarks/training_speed.py " + " ".join(argv or sys.argv[1:]), "settings": vars(args)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
