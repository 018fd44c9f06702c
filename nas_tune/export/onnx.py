"""ONNX export of a sub-network: `model.onnx` beside the PyTorch export, checked against it in ONNX Runtime.

Why the torch.export-based ("dynamo") exporter, torch's default since 2.9: the legacy TorchScript
tracer turns transformers' Python checks on the attention mask into constants, so a model traced
with an all-ones mask silently drops its `attention_mask` input and ignores padding. The graph has
dynamic batch and sequence axes; before anything is written the ONNX model must reproduce the
PyTorch logits within `TOLERANCE` on shapes other than the traced one, padding included.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_json

ONNX_FILE = "model.onnx"
ONNX_REPORT = "nas_tune_onnx.json"
TOLERANCE = 1e-4  # largest absolute logit difference accepted between ONNX Runtime and PyTorch
TRACE_SHAPE = (2, 16)  # batch, sequence of the example inputs (sizes 0 and 1 would be specialised)
PROBE_SHAPES = ((1, 7), (3, 33))  # checked after export: other sizes than traced, prove the axes dynamic


@dataclass(frozen=True)
class OnnxLatency:
    batch_size: int
    seq_len: int
    threads: int
    pytorch_ms: float
    onnxruntime_ms: float


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    input_names: tuple[str, ...]
    opset: int
    max_abs_difference: float  # over PROBE_SHAPES, padded rows included
    latency: OnnxLatency


def _inputs(
    model: PreTrainedModel, input_names: tuple[str, ...], batch_size: int, seq_len: int, *, pad: bool, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random token ids (as `measure_latency` uses); with `pad`, the first row is half padding."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, model.config.vocab_size, (batch_size, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if pad:
        attention_mask[0, seq_len // 2 :] = 0
    available = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }
    return {name: available[name] for name in input_names}


def _input_names(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    """What the tokenizer produces is what a deployed model is fed (RoBERTa: no token_type_ids)."""
    names = tuple(n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids"))
    return ("input_ids", *[n for n in names if n != "input_ids"])


def _write_onnx(model: PreTrainedModel, input_names: tuple[str, ...], path: Path) -> None:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = _inputs(model, input_names, *TRACE_SHAPE, pad=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every pass
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (),
            kwargs=example,
            input_names=list(input_names),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in input_names},
            dynamo=True,
            verbose=False,
        )
        program.save(path)


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session on `threads` intra-op threads, quiet."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1  # the same cores torch gets
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _largest_difference(model: PreTrainedModel, session, input_names: tuple[str, ...]) -> float:
    differences = []
    for seed, (batch_size, seq_len) in enumerate(PROBE_SHAPES):
        feed = _inputs(model, input_names, batch_size, seq_len, pad=True, seed=seed + 1)
        with torch.inference_mode():
            expected = model(**feed).logits.float().numpy()
        (actual,) = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})
        differences.append(float(np.abs(actual - expected).max()) if expected.size else 0.0)
    return max(differences)


def _median_seconds(call: Callable[[], object], threads: int, min_run_time: float) -> float:
    from torch.utils import benchmark

    return (
        benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=threads)
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def measure_onnx_latency(
    model: PreTrainedModel,
    session,
    input_names: tuple[str, ...],
    *,
    batch_size: int = 1,
    seq_len: int = 128,
    min_run_time: float = 0.5,
) -> OnnxLatency:
    """PyTorch and ONNX Runtime timed the same way, on the same inputs and thread count."""
    seq_len = min(seq_len, model.config.max_position_embeddings - 2)  # RoBERTa offsets positions by 2
    threads = torch.get_num_threads()
    feed = _inputs(model, input_names, batch_size, seq_len, pad=False)
    numpy_feed = {k: v.numpy() for k, v in feed.items()}

    def pytorch() -> None:
        with torch.inference_mode():
            model(**feed)

    pytorch_seconds = _median_seconds(pytorch, threads, min_run_time)
    onnx_seconds = _median_seconds(lambda: session.run(["logits"], numpy_feed), threads, min_run_time)
    return OnnxLatency(batch_size, seq_len, threads, round(pytorch_seconds * 1000, 3), round(onnx_seconds * 1000, 3))


class StagedOnnx:
    """An exported and verified ONNX model waiting in a staging folder beside its destination."""

    def __init__(
        self, model: PreTrainedModel, input_names: tuple[str, ...], staging: Path, max_abs_difference: float, opset: int
    ):
        self.model, self.input_names, self.staging = model, input_names, staging
        self.max_abs_difference, self.opset = max_abs_difference, opset

    def install(self, folder: str | Path, *, seq_len: int = 128) -> OnnxExport:
        """Move the ONNX files into the (already written) export folder, time them, record both."""
        folder = Path(folder)
        for item in sorted(self.staging.iterdir()):  # model.onnx, plus model.onnx.data for models over 2 GB
            os.replace(item, folder / item.name)
        latency = measure_onnx_latency(
            self.model, onnx_session(folder / ONNX_FILE, torch.get_num_threads()), self.input_names, seq_len=seq_len
        )
        result = OnnxExport(folder / ONNX_FILE, self.input_names, self.opset, self.max_abs_difference, latency)
        import onnxruntime

        atomic_write_json(
            folder / ONNX_REPORT,
            {
                "file": ONNX_FILE,
                "exporter": "torch.onnx.export(dynamo=True)",
                "opset": self.opset,
                "inputs": list(self.input_names),
                "outputs": ["logits"],
                "dynamic_axes": {"0": "batch", "1": "sequence"},
                "max_abs_difference": self.max_abs_difference,
                "tolerance": TOLERANCE,
                "latency": asdict(latency),
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        )
        return result


@contextlib.contextmanager
def staged_onnx(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, destination: str | Path
) -> Iterator[StagedOnnx]:
    """Export `model` (an extracted sub-network) to ONNX and check it, before the caller writes anything.

    Raises UserError when the exporter fails or ONNX Runtime disagrees with PyTorch: the caller's
    `destination` is then untouched. Whatever is not installed is removed on exit.
    """
    try:
        import onnx
        import onnxruntime  # noqa: F401 - fail here, not after the export
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError as exc:
        raise UserError(
            f"--format onnx needs the ONNX extra ({exc.name} is missing); install it with pip install 'nas-tune[onnx]'."
        ) from None
    model = model.eval()
    input_names = _input_names(tokenizer)
    parent = Path(destination).parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{Path(destination).name}.onnx.") as staging:
        path = Path(staging) / ONNX_FILE
        try:
            _write_onnx(model, input_names, path)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means this sub-network has no ONNX form here
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(
                f"this sub-network cannot be written as ONNX ({type(exc).__name__}: {first_line[:200]}); "
                "export it without --format onnx."
            ) from None
        difference = _largest_difference(model, onnx_session(path, torch.get_num_threads()), input_names)
        if not difference <= TOLERANCE:
            raise UserError(
                f"ONNX Runtime's logits differ from PyTorch's by {difference:.2g} (more than {TOLERANCE:g}) for this sub-network; "
                "export it without --format onnx."
            )
        opset = next(
            o.version
            for o in onnx.load(str(path), load_external_data=False).opset_import
            if o.domain in ("", "ai.onnx")
        )
        yield StagedOnnx(model, input_names, Path(staging), difference, opset)
