"""Where one super-network training step spends its time: sandwich_kd phase by phase, beside a standard step.

MiniLM on real SST-2 training batches (each batch trimmed to its longest row, as training does). Both
strategies run the same batches, alternated step by step, with the optimizer, clipping and scheduler of
`nas-tune finetune`. Phases of a step:

- data: moving the batch to the model's device (batches are tokenised once, before training);
- forward / backward of each sub-network, by role: largest (the in-place teacher, trained on labels),
  smallest, random (the sampled ones; sandwich_kd draws 2);
- loss: the label and distillation losses between the forwards and backwards;
- clip, optimizer (AdamW + linear schedule), and the training-state save amortised over --save-steps
  (the state is saved every save_steps steps, so 1/save_steps of a save belongs to each step).

The ratio sandwich_kd / standard says what the super-network's weight sharing costs per step.

    python benchmarks/step_profile.py [--steps 8] [--batch-size 32] [--seq-len 64]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import get_linear_schedule_with_warmup

from nas_tune.cli import quiet_libraries
from nas_tune.data.loading import DataConfig, load_task_data
from nas_tune.data.tokenize import tokenize_split
from nas_tune.io import atomic_write_json, atomic_write_text
from nas_tune.models import load_model
from nas_tune.search_space import make_search_space
from nas_tune.supernet import make_strategy
from nas_tune.supernet.train import _save_state, build_optimizer

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("standard", "sandwich_kd")


class PhaseClock:
    """Accumulates seconds per phase within one step; forwards and backwards are named by the sub-network's role."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.role = "largest"

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def instrument(strategy, clock: PhaseClock):
    """Name the forwards and backwards that follow by the role of the sub-network the strategy trains next."""
    backward = strategy._backward

    def with_role(model, subnet, batch, loss_of):
        clock.role = (
            "largest" if subnet == strategy.largest else "smallest" if subnet == strategy.smallest else "random"
        )
        return backward(model, subnet, batch, loss_of)

    strategy._backward = with_role


@contextlib.contextmanager
def timed_forward(model: torch.nn.Module, clock: PhaseClock):
    """Time every forward pass of `model` (hooks around its outermost call) under the clock's current role."""
    started: list[float] = []

    def start(module, args):
        started.append(time.perf_counter())

    def stop(module, args, output):
        clock.seconds[f"forward {clock.role}"] += time.perf_counter() - started.pop()

    handles = [model.register_forward_pre_hook(start), model.register_forward_hook(stop)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def timed_backward(clock: PhaseClock):
    original = torch.Tensor.backward

    def backward(tensor, *args, **kwargs):
        with clock.phase(f"backward {clock.role}"):
            return original(tensor, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per strategy (after one warm-up step each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument(
        "--save-steps", type=int, default=50, help="the training-state save interval to amortise (finetune's default)"
    )
    parser.add_argument("--dataset", default="sst2")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.seq_len, args.save_steps) < 1:
        print("step_profile: --steps, --batch-size, --seq-len and --save-steps must be at least 1.", file=sys.stderr)
        return 2
    quiet_libraries()
    torch.manual_seed(0)
    data = load_task_data(DataConfig(dataset=args.dataset, max_train_samples=args.batch_size * (args.steps + 1)))
    loaded = load_model(None, data.task.num_labels)
    train = tokenize_split(data.train, loaded.tokenizer, data.task, args.seq_len)
    batches = list(train.batches(args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)))
    model, adapter = loaded.model.train(), loaded.adapter
    space = make_search_space("small", adapter.shape(model))
    optimizer = build_optimizer(
        model, 1e-5, 0.01
    )  # finetune's optimizer; a small lr: the model barely moves between steps
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 10 * len(batches))
    strategies = {name: make_strategy(name, adapter, space, np.random.default_rng(0)) for name in STRATEGIES}
    clocks = {name: PhaseClock() for name in STRATEGIES}
    for name, strategy in strategies.items():
        instrument(strategy, clocks[name])
    steps: dict[str, list[dict[str, float]]] = {name: [] for name in STRATEGIES}
    with tempfile.TemporaryDirectory() as scratch:
        save_seconds = []
        for index, batch in enumerate(batches):
            for name, strategy in strategies.items():
                clock = clocks[name]
                clock.reset()
                start = time.perf_counter()
                with clock.phase("data"):
                    on_device = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
                optimizer.zero_grad(set_to_none=True)
                with timed_backward(clock), timed_forward(model, clock):
                    strategy.step(model, on_device, progress=0.5)
                with clock.phase("clip"):
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                with clock.phase("optimizer"):
                    optimizer.step()
                    scheduler.step()
                step_seconds = time.perf_counter() - start
                if index:  # the first step of each strategy warms up
                    clock.seconds["loss"] = step_seconds - sum(clock.seconds.values())
                    steps[name].append(dict(clock.seconds))
            if index in (1, len(batches) - 1):
                start = time.perf_counter()
                _save_state(
                    Path(scratch),
                    model,
                    optimizer,
                    scheduler,
                    np.random.default_rng(0),
                    {"epoch": 0, "batch": index, "global_step": index},
                )
                save_seconds.append(time.perf_counter() - start)
    rows = []
    for name, timed in steps.items():
        phases = sorted({phase for step in timed for phase in step})
        medians = {phase: statistics.median(step.get(phase, 0.0) for step in timed) for phase in phases}
        medians["state save / save_steps"] = statistics.median(save_seconds) / args.save_steps
        total = sum(medians.values())
        rows += [
            {"strategy": name, "phase": phase, "seconds": round(s, 4), "share": round(s / total, 3)}
            for phase, s in medians.items()
        ]
        rows.append({"strategy": name, "phase": "step total", "seconds": round(total, 4), "share": 1.0})
    table = pd.DataFrame(rows)
    totals = table[table.phase == "step total"].set_index("strategy")["seconds"]
    ratio = float(totals["sandwich_kd"] / totals["standard"])
    print(table.to_string(index=False))
    print(
        f"\nsandwich_kd step / standard step: {ratio:.2f} (median of {args.steps} steps each, batch {args.batch_size}, "
        f"up to {args.seq_len} tokens, {torch.get_num_threads()} threads); state save {statistics.median(save_seconds):.2f} s"
    )
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "step_profile.csv", table.to_csv(index=False))
    atomic_write_json(
        RESULTS / "step_profile.json",
        {
            "command": "python benchmarks/step_profile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": vars(args),
            "threads": torch.get_num_threads(),
            "sandwich_kd_over_standard": round(ratio, 3),
            "state_save_seconds": round(statistics.median(save_seconds), 3),
            "mean_tokens_per_batch": round(float(np.mean([b["input_ids"].shape[1] for b in batches])), 1),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
