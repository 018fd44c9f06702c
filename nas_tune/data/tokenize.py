"""Tokenised splits as tensors, cached on disk: every search trial re-evaluates the same texts."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from safetensors import SafetensorError

from nas_tune.data.tasks import TaskSpec
from nas_tune.errors import UserError
from nas_tune.io import atomic_write_bytes

_CACHE_FORMAT = 1  # bump when the cached tensors change meaning


@dataclass
class TokenizedSplit:
    input_ids: torch.Tensor  # [N, T] int64, right-padded with the tokenizer's pad id
    attention_mask: torch.Tensor  # [N, T] int64
    token_type_ids: torch.Tensor | None  # [N, T] int64 when the tokenizer produces them
    labels: torch.Tensor  # [N] int64 (classification), float32 (regression), or [N, T] next-token targets (causal LM)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The present tensors by name (token_type_ids left out when None)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if getattr(self, item.name) is not None}

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> TokenizedSplit:
        index = torch.as_tensor(indices, dtype=torch.long)
        return replace(self, **{name: tensor[index] for name, tensor in self.tensors().items()})

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        sort_by_length: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Dicts with input_ids, attention_mask, (token_type_ids), labels; each batch trimmed to its longest row.

        sort_by_length groups similar lengths (less padding, faster evaluation); labels travel with their rows,
        so metrics computed from the yielded labels stay right.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        lengths = self.attention_mask.sum(dim=1)
        if sort_by_length:
            order = order[torch.argsort(lengths[order], descending=True, stable=True)]
        for start in range(0, len(self), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            yield {
                name: tensor[rows] if name == "labels" else tensor[rows, :width]
                for name, tensor in self.tensors().items()
            }


def default_cache_dir() -> Path:
    return Path(os.environ.get("NAS_TUNE_CACHE") or Path.home() / ".cache" / "nas_tune").expanduser()


def tokenize_split(
    frame: pd.DataFrame,
    tokenizer,
    task: TaskSpec,
    max_seq_length: int = 128,
    cache_dir: str | Path | None = None,
) -> TokenizedSplit:
    """Tokenise task.text_columns (one text or a pair) of frame; cache_dir=None disables the on-disk cache.

    Rows are padded to the longest row of the split (not to max_seq_length): batches are trimmed anyway and
    the cache stays small. A causal LM task joins its rows into one text and cuts it into blocks of exactly
    max_seq_length tokens (the incomplete last block is dropped), each its own next-token targets.
    """
    texts = [frame[column].astype(str).tolist() for column in task.text_columns]
    if task.causal_lm:
        labels = torch.zeros(0, dtype=torch.int64)
        encode = partial(_encode_blocks, "".join(texts[0]), tokenizer=tokenizer, block_length=max_seq_length)
    else:
        labels = torch.tensor(frame["label"].to_numpy(), dtype=torch.float32 if task.is_regression else torch.int64)
        encode = partial(_encode, texts, labels, tokenizer, max_seq_length)
    if cache_dir is None:
        return encode()
    key = _cache_key(texts, labels, tokenizer, task, max_seq_length)
    path = Path(cache_dir) / "tokenized" / f"{key}.safetensors"
    cached = _read_cache(path, None if task.causal_lm else len(labels))
    if cached is not None:
        return cached
    split = encode()
    atomic_write_bytes(path, safetensors.torch.save(split.tensors()))
    return split


def _encode_blocks(text: str, tokenizer, block_length: int) -> TokenizedSplit:
    # No special tokens: a block is a window on running text, not a document of its own.
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    count = len(ids) // block_length
    if count == 0:
        raise UserError(
            f"The text has {len(ids)} tokens, fewer than one block of {block_length} (--max-seq-length); "
            "use a longer file, more paragraphs (--max-*-samples) or a smaller --max-seq-length."
        )
    blocks = torch.tensor(ids[: count * block_length], dtype=torch.int64).view(count, block_length)
    return TokenizedSplit(
        input_ids=blocks, attention_mask=torch.ones_like(blocks), token_type_ids=None, labels=blocks.clone()
    )


def _encode(texts: list[list[str]], labels: torch.Tensor, tokenizer, max_seq_length: int) -> TokenizedSplit:
    encoding = tokenizer(
        *texts,
        truncation=True,
        max_length=max_seq_length,
        padding="longest",
        padding_side="right",
        return_tensors="pt",
    )
    token_type_ids = encoding.get("token_type_ids")
    return TokenizedSplit(
        input_ids=encoding["input_ids"].long(),
        attention_mask=encoding["attention_mask"].long(),
        token_type_ids=None if token_type_ids is None else token_type_ids.long(),
        labels=labels,
    )


def _cache_key(texts: list[list[str]], labels: torch.Tensor, tokenizer, task: TaskSpec, max_seq_length: int) -> str:
    data = hashlib.sha256(json.dumps(texts).encode("utf-8"))
    data.update(str(labels.dtype).encode("utf-8"))
    data.update(labels.numpy().tobytes())
    description = {
        "format": _CACHE_FORMAT,
        "tokenizer": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        "name_or_path": str(tokenizer.name_or_path),
        "vocab_size": len(tokenizer),
        "max_seq_length": max_seq_length,
        "task": task.name,
        "data": data.hexdigest(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode("utf-8")).hexdigest()


def _read_cache(path: Path, num_rows: int | None) -> TokenizedSplit | None:
    """The cached split, or None when it is missing, unreadable or does not fit (then it is rebuilt).

    num_rows: the number of examples it must hold; None when only tokenising tells (blocks of text)."""
    try:
        tensors = safetensors.torch.load(path.read_bytes())
    except (OSError, SafetensorError):
        return None
    required = ("input_ids", "attention_mask", "labels")
    if not all(name in tensors for name in required):
        return None
    rows = {len(tensors[name]) for name in required}
    if len(rows) != 1 or (num_rows is not None and rows != {num_rows}):
        return None
    return TokenizedSplit(
        input_ids=tensors["input_ids"],
        attention_mask=tensors["attention_mask"],
        token_type_ids=tensors.get("token_type_ids"),
        labels=tensors["labels"],
    )
