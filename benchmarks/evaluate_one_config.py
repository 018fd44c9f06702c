"""Entry point of the process-per-trial pattern (Syne Tune's LocalBackend): load, evaluate one config, exit.

This is what nas-tune's engine avoids; `trial_overhead.py` runs it for comparison.
"""

from __future__ import annotations

import argparse

from syne_tune import Reporter

from nas_tune.cli import quiet_libraries
from nas_tune.evaluate.setup import checkpoint_evaluator, read_checkpoint

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--num_layers", type=int, required=True)
    parser.add_argument("--num_heads", type=int, required=True)
    parser.add_argument("--num_units", type=int, required=True)
    args, _ = parser.parse_known_args()
    quiet_libraries()
    setup = checkpoint_evaluator(read_checkpoint(args.checkpoint), search_space="small")
    config = {"num_layers": args.num_layers, "num_heads": args.num_heads, "num_units": args.num_units}
    result = setup.evaluator.evaluate(config)
    Reporter()(error=result.error, params=result.layer_fraction)
