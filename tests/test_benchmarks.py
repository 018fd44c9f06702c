"""The benchmarks compare like with like: what they hold fixed really is the same on both sides."""

from __future__ import annotations

import torch
from conftest import tiny_model

from benchmarks.export_speed import dense_reference, shapes_of
from nas_tune.models import adapter_for


def test_dense_reference_has_exactly_the_exports_parameters_and_runs():
    model = tiny_model("bert")
    adapter = adapter_for("bert")
    full = adapter.shape(model)
    shapes = shapes_of(full)
    assert {(s.layers, s.heads, s.units) for s in shapes} >= {(3, 2, 18), (1, 4, 37), (3, 4, 37)}
    for shape in shapes:
        exported = adapter.extract(model, shape.subnetwork(full))
        dense = dense_reference(model, full, shape)
        assert type(dense).__name__ == "BertForSequenceClassification"
        assert {n: p.shape for n, p in dense.named_parameters()} == {n: p.shape for n, p in exported.named_parameters()}
        assert all(p.is_contiguous() for p in dense.parameters())
        with torch.inference_mode():
            logits = dense(input_ids=torch.randint(1000, 2000, (2, 9)), attention_mask=torch.ones(2, 9, dtype=torch.long)).logits
        assert logits.shape == (2, 2)
