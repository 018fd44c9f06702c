"""`--format onnx`: ONNX Runtime predicts what the PyTorch export predicts; a failed ONNX export writes nothing."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from nas_tune.cli import main

MIXED = '{"num_heads_0": 0, "num_units_0": 3, "num_heads_1": 2, "num_units_1": 37, "num_heads_2": 4, "num_units_2": 0}'


@pytest.mark.parametrize("folder", ["tiny_model_dir", "tiny_mean_model_dir"])
def test_onnx_export_matches_the_pytorch_export_on_padded_batches(capsys, tmp_path, folder, tokenizer, request):
    out = tmp_path / "small"
    code = main(
        [
            "export",
            "--model",
            str(request.getfixturevalue(folder)),
            "--search-space",
            "medium",
            "--config",
            MIXED,
            "--output",
            str(out),
            "--format",
            "onnx",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert (
        code == 0 and result["onnx"]["max_abs_difference"] <= 1e-4 and result["onnx"]["latency"]["onnxruntime_ms"] > 0
    )
    pytorch = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = tokenizer(
        ["a short one", "a much longer sentence that needs more tokens than the first"],
        padding=True,
        return_tensors="np",
    )
    with torch.inference_mode():
        expected = pytorch(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    (actual,) = session.run(["logits"], {i.name: batch[i.name] for i in session.get_inputs()})
    assert np.abs(actual - expected).max() < 1e-4
    assert json.loads((out / "nas_tune_onnx.json").read_text())["inputs"] == [
        "input_ids",
        "token_type_ids",
        "attention_mask",
    ]


def test_a_sub_network_onnx_cannot_express_is_refused_and_nothing_is_overwritten(
    capsys, tmp_path, tiny_model_dir, monkeypatch
):
    out = tmp_path / "small"
    out.mkdir()
    (out / "keep.txt").write_text("precious")

    def unsupported(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::something")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    code = main(
        [
            "export",
            "--model",
            str(tiny_model_dir),
            "--config",
            "smallest",
            "--output",
            str(out),
            "--overwrite",
            "--format",
            "onnx",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot be written as ONNX" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "small"
    ]
