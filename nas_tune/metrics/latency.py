"""Measured inference latency: the median of repeated timed forwards after warm-up."""

from __future__ import annotations

import statistics
import time

import torch
from transformers import PreTrainedModel


def measure_latency(
    model: PreTrainedModel, *, batch_size: int = 1, seq_len: int = 128, warmup: int = 3, repeats: int = 10, seed: int = 0
) -> float:
    """Seconds per forward of a batch of random token ids; the median resists scheduler noise."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, model.config.vocab_size, (batch_size, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    timings = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(input_ids=input_ids, attention_mask=attention_mask)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= warmup:
                timings.append(time.perf_counter() - start)
    return statistics.median(timings)
