"""Property tests: masked super-network == sliced sub-network == exported model, sizes exact."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nas_tune.export import export_subnetwork
from nas_tune.metrics import count_flops, count_parameters
from nas_tune.models import SubNetwork, adapter_for
from nas_tune.search_space import SEARCH_SPACES, make_search_space
from tests.conftest import tiny_model

FAMILIES = ["bert", "roberta"]


def inputs(batch: int = 3, length: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 30000, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding in one row exercises the attention mask
    return {"input_ids": ids, "attention_mask": mask}


def layer_numel(adapter, model) -> int:
    return sum(p.numel() for layer in adapter.layers(model) for p in layer.parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("space_name", list(SEARCH_SPACES))
def test_masked_equals_extracted_and_sizes_are_exact(family, space_name):
    model = tiny_model(family)
    adapter = adapter_for(family)
    space = make_search_space(space_name, adapter.shape(model))
    rng = np.random.default_rng(1)
    batch = inputs()
    configs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(12)]
    with torch.inference_mode():
        for config in configs:
            subnet = space.to_subnetwork(config)
            with adapter.masked(model, subnet):
                masked = model(**batch).logits
            small = adapter.extract(model, subnet)
            np.testing.assert_allclose(small(**batch).logits.numpy(), masked.numpy(), atol=1e-5)
            size = count_parameters(model, adapter, subnet)
            assert size.layer_params == layer_numel(adapter, small)
            assert size.total_params == sum(p.numel() for p in small.parameters())
    # the masked context leaves the super-network untouched
    assert len(adapter.layers(model)) == 3


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("space_name", list(SEARCH_SPACES))
def test_sliced_training_view_has_the_masked_function_and_gradients(family, space_name):
    model = tiny_model(family).train()
    adapter = adapter_for(family)
    space = make_search_space(space_name, adapter.shape(model))
    rng = np.random.default_rng(2)
    reference_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    for config in [space.smallest()] + [space.sample(rng) for _ in range(5)]:
        subnet = space.to_subnetwork(config)
        grads = []
        for context in (adapter.masked, adapter.sliced):
            model.zero_grad(set_to_none=True)
            with context(model, subnet):
                logits = model(**inputs())
                logits.logits.pow(2).sum().backward()
            grads.append({n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()})
            grads[-1]["logits"] = logits.logits.detach()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)
    # the contexts restore the super-network exactly
    assert all(torch.equal(p, reference_params[n]) for n, p in model.named_parameters())
    assert all(type(layer.attention.output.dense) is torch.nn.Linear for layer in adapter.layers(model))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_largest_subnetwork_is_the_original_model_bit_for_bit(family, attn):
    model = tiny_model(family, attn_implementation=attn)
    adapter = adapter_for(family)
    full = SubNetwork.full(adapter.shape(model))
    batch = inputs()
    with torch.inference_mode():
        reference = model(**batch).logits
        assert torch.equal(adapter.extract(model, full)(**batch).logits, reference)
        with adapter.masked(model, full):
            assert torch.equal(model(**batch).logits, reference)


def test_head_pruning_really_removes_heads_and_changes_output():
    model = tiny_model("bert")
    adapter = adapter_for("bert")
    shape = adapter.shape(model)
    subnet = SubNetwork.first_k(shape, 3, [2, 0, 4], [37, 10, 0])
    small = adapter.extract(model, subnet)
    layers = adapter.layers(small)
    assert layers[0].attention.self.query.out_features == 2 * shape.head_dim
    assert layers[1].attention.output.dense.in_features == 0
    assert layers[2].intermediate.dense.out_features == 0
    with torch.inference_mode():
        assert not torch.allclose(small(**inputs()).logits, model(**inputs()).logits)


def test_flops_follow_size():
    model = tiny_model("bert")
    adapter = adapter_for("bert")
    shape = adapter.shape(model)
    full = count_flops(model, adapter, SubNetwork.full(shape), 128)
    half = count_flops(model, adapter, SubNetwork.first_k(shape, 3, [2] * 3, [37] * 3), 128)
    none = count_flops(model, adapter, SubNetwork.first_k(shape, 0, [0] * 3, [0] * 3), 128)
    assert none < half < full
    # one full layer at 128 tokens: 4 projections + attention + FFN, by hand
    h, w, f, t = 32, 32, 37, 128
    per_layer = 2 * t * h * w * 4 + 4 * t * t * w + 4 * t * h * f
    assert full - none == 3 * per_layer


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModelForSequenceClassification
    path, remote = sys.argv[1], sys.argv[2] == "1"
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=remote).eval()
    batch = {k: torch.tensor(v) for k, v in json.loads(sys.stdin.read()).items()}
    with torch.inference_mode():
        logits = model(**batch).logits
    assert "nas_tune" not in sys.modules
    print(json.dumps({"logits": logits.tolist(), "numel": sum(p.numel() for p in model.parameters()), "cls": type(model).__name__}))
    """
)


def load_in_fresh_python(path, remote: bool, batch) -> dict:
    import json

    payload = json.dumps({k: v.tolist() for k, v in batch.items()})
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(path), "1" if remote else "0"],
        input=payload, capture_output=True, text=True, cwd=path, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("family", "space_name", "config_overrides", "stock"),
    [
        ("bert", "small", {"num_layers": 2, "num_heads": 4, "num_units": 20}, True),
        ("bert", "medium", None, False),
        ("roberta", "layer", {"layer_0": 1, "layer_1": 0, "layer_2": 1}, True),
        ("roberta", "large", None, False),
    ],
)
def test_export_loads_with_plain_transformers(tmp_path, tokenizer, family, space_name, config_overrides, stock):
    model = tiny_model(family)
    adapter = adapter_for(family)
    space = make_search_space(space_name, adapter.shape(model))
    config = config_overrides or space.sample(np.random.default_rng(3))
    if space_name == "medium":
        config["num_heads_1"] = 0  # a layer without attention must export too
    subnet = space.to_subnetwork(config)
    result = export_subnetwork(model, tokenizer, adapter, subnet, tmp_path / "out", provenance={"config": config})
    assert result.needs_remote_code is not stock
    assert (tmp_path / "out" / "modeling_nas_tune.py").exists() is not stock
    batch = inputs()
    with torch.inference_mode(), adapter.masked(model, subnet):
        masked = model(**batch).logits
    loaded = load_in_fresh_python(tmp_path / "out", remote=not stock, batch=batch)
    np.testing.assert_allclose(np.array(loaded["logits"]), masked.numpy(), atol=1e-4)
    assert loaded["numel"] == result.total_params
    assert not list(tmp_path.glob(".out.*")), "staging folder left behind"
