"""Measured inference latency: seconds per forward, timed by `torch.utils.benchmark` one timing at a time."""

from __future__ import annotations

import threading

import torch
from torch.utils import benchmark
from transformers import PreTrainedModel

# Worker threads of one search share the cores: two timings at once would each see the other's load.
_ONE_TIMING_AT_A_TIME = threading.Lock()


def measure_latency(
    model: PreTrainedModel,
    *,
    batch_size: int = 1,
    seq_len: int = 128,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    seed: int = 0,
) -> float:
    """Mean seconds per forward of a batch of random token ids over `repeats` forwards after `warmup`, with
    `threads` intra-op threads (default: torch's current setting): compare only numbers timed alike."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, model.config.vocab_size, (batch_size, seq_len), generator=generator).to(device)
    timer = benchmark.Timer(  # synchronises CUDA around the timed block; sets and restores the thread count
        stmt="model(input_ids=input_ids, attention_mask=attention_mask)",
        globals={"model": model, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)},
        num_threads=threads or torch.get_num_threads(),
    )
    with _ONE_TIMING_AT_A_TIME, torch.inference_mode():
        if warmup:
            timer.timeit(warmup)
        return timer.timeit(repeats).mean
