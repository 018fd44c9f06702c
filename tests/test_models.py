"""Property tests of every model family: masked super-network == sliced sub-network == exported model, sizes exact.

Adding a family to FAMILIES (a `tests.conftest.tiny_model` name) runs the whole contract on it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from nas_tune.errors import UserError
from nas_tune.export import export_subnetwork
from nas_tune.metrics import count_flops, count_parameters
from nas_tune.models import SubNetwork, adapter_for
from nas_tune.search_space import SEARCH_SPACES, make_search_space
from tests.conftest import DECODERS, tiny_model

FAMILIES = [
    "bert",
    "roberta",
    "bert-mean",
    "roberta-mean",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gpt2",
    "llama-cls",
    "gpt2-cls",
]


def family_model(family: str, **kwargs):
    model = tiny_model(family, **kwargs)
    return model, adapter_for(model.config.model_type)


def inputs(model=None, batch: int = 3, length: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    vocab = 30000 if model is None else min(30000, model.config.vocab_size)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding in one row exercises the attention mask
    if model is not None and model.config.pad_token_id is not None:
        ids[mask == 0] = model.config.pad_token_id  # a decoder classifier finds its last token by the pad id
    return {"input_ids": ids, "attention_mask": mask}


def layer_numel(adapter, model) -> int:
    return sum(p.numel() for layer in adapter.layers(model) for p in layer.parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("space_name", list(SEARCH_SPACES))
def test_masked_equals_extracted_and_sizes_are_exact(family, space_name):
    model, adapter = family_model(family)
    space = make_search_space(space_name, adapter.shape(model))
    rng = np.random.default_rng(1)
    batch = inputs(model)
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
    model, adapter = family_model(family)
    model.train()
    space = make_search_space(space_name, adapter.shape(model))
    rng = np.random.default_rng(2)
    reference_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference_modules = [(name, type(module)) for name, module in model.named_modules()]
    for config in [space.smallest()] + [space.sample(rng) for _ in range(5)]:
        subnet = space.to_subnetwork(config)
        grads = []
        for context in (adapter.masked, adapter.sliced):
            model.zero_grad(set_to_none=True)
            with context(model, subnet):
                logits = model(**inputs(model))
                logits.logits.pow(2).sum().backward()
            grads.append(
                {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
            )
            grads[-1]["logits"] = logits.logits.detach()
        for name in grads[0]:
            torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)
    # the contexts restore the super-network exactly
    assert all(torch.equal(p, reference_params[n]) for n, p in model.named_parameters())
    assert [(name, type(module)) for name, module in model.named_modules()] == reference_modules


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_largest_subnetwork_is_the_original_model_bit_for_bit(family, attn):
    model, adapter = family_model(family, attn_implementation=attn)
    full = SubNetwork.full(adapter.shape(model))
    batch = inputs(model)
    with torch.inference_mode():
        reference = model(**batch).logits
        assert torch.equal(adapter.extract(model, full)(**batch).logits, reference)
        with adapter.masked(model, full):
            assert torch.equal(model(**batch).logits, reference)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_uniformly_cut_model_has_its_own_shape_and_prunes_again(family):
    model, adapter = family_model(family)
    shape = adapter.shape(model)
    space = make_search_space("small", shape)
    config = space.largest() | (
        {"num_kv_groups": 1} if "num_kv_groups" in space.largest() else {"num_heads": shape.num_heads - 1}
    )
    small = adapter.extract(model, space.to_subnetwork({**config, "num_layers": 2, "num_units": 20}))
    cut = adapter.shape(small)
    kept_heads = shape.group_size if shape.group_size > 1 else shape.num_heads - 1
    assert (cut.num_layers, cut.num_heads, cut.head_dim, cut.ffn_size) == (2, kept_heads, shape.head_dim, 20)
    assert cut.kv_heads == (1 if shape.group_size > 1 else kept_heads) and cut.hidden_size == shape.hidden_size
    # the cut model is a super-network of its own: masking, slicing and extraction of it agree
    subnet = SubNetwork.first_k(cut, 2, [cut.group_size] * 2, [7, 13])
    batch = inputs(model)
    with torch.inference_mode():
        with adapter.masked(small, subnet):
            masked = small(**batch).logits
        with adapter.sliced(small, subnet):
            np.testing.assert_allclose(small(**batch).logits.numpy(), masked.numpy(), atol=1e-5)
        np.testing.assert_allclose(adapter.extract(small, subnet)(**batch).logits.numpy(), masked.numpy(), atol=1e-5)


def test_a_model_cut_unevenly_is_no_super_network():
    model, adapter = family_model("bert")
    uneven = adapter.extract(model, SubNetwork.first_k(adapter.shape(model), 3, [1, 3, 4], [37] * 3))
    with pytest.raises(UserError, match="^this bert model was cut by nas-tune to different sizes per layer"):
        adapter.shape(uneven)


def group_permutation(shape, rng) -> tuple[int, ...]:
    """A random reordering of one layer's heads that moves whole key/value groups (each group's heads shuffled too)."""
    size = shape.group_size
    return tuple(int(g) * size + int(j) for g in rng.permutation(shape.kv_heads) for j in rng.permutation(size))


@pytest.mark.parametrize("family", FAMILIES)
def test_permuting_heads_groups_and_neurons_keeps_the_function(family):
    model, adapter = family_model(family)
    shape = adapter.shape(model)
    rng = np.random.default_rng(4)
    batch = inputs(model)
    orders = [
        (group_permutation(shape, rng), tuple(int(u) for u in rng.permutation(shape.ffn_size)))
        for _ in range(shape.num_layers)
    ]
    subnet = make_search_space("large", shape).sample(rng)
    with torch.inference_mode():
        reference = model(**batch).logits
    for index, (heads, units) in enumerate(orders):
        adapter.permute_layer(model, index, heads, units)
    with torch.inference_mode():
        np.testing.assert_allclose(model(**batch).logits.numpy(), reference.numpy(), atol=1e-5)
    assert any(heads != tuple(range(shape.num_heads)) for heads, _ in orders)  # something really moved
    # the permuted model is still a super-network: masking and extraction agree on it
    subnet = make_search_space("large", shape).to_subnetwork(subnet)
    with torch.inference_mode(), adapter.masked(model, subnet):
        masked = model(**batch).logits
    with torch.inference_mode():
        np.testing.assert_allclose(adapter.extract(model, subnet)(**batch).logits.numpy(), masked.numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_reordering_that_splits_a_key_value_group_is_refused(family):
    model, adapter = family_model(family)
    shape = adapter.shape(model)
    mixed = (
        0,
        shape.group_size,
        *(h for h in range(shape.num_heads) if h not in (0, shape.group_size)),
    )  # heads of groups 0 and 1 together
    with pytest.raises(ValueError, match="must come from one group"):
        adapter.permute_layer(model, 0, mixed, tuple(range(shape.ffn_size)))
    with pytest.raises(ValueError, match="permutation"):
        adapter.permute_layer(model, 0, tuple(range(shape.num_heads)), (0,) * shape.ffn_size)


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
    import json, sys
    sys.modules["nas_tune"] = None  # an exported folder must load without nas-tune: make it unimportable
    import torch, transformers
    results = []
    for case in json.loads(sys.stdin.read()):
        path, remote = case["path"], case["remote"]
        architecture = transformers.AutoConfig.from_pretrained(path, trust_remote_code=remote).architectures[0]
        auto = transformers.AutoModelForSequenceClassification if architecture.endswith("ForSequenceClassification") else transformers.AutoModelForCausalLM
        model = auto.from_pretrained(path, trust_remote_code=remote).eval()
        batch = {k: torch.tensor(v) for k, v in case["batch"].items()}
        with torch.inference_mode():
            result = {"logits": model(**batch).logits.tolist(), "numel": sum(p.numel() for p in model.parameters()),
                      "cls": type(model).__name__, "module": type(model).__module__}
            if case.get("prompt"):
                prompt = {k: torch.tensor(v) for k, v in case["prompt"].items()}
                result["generated"] = model.generate(**prompt, **case["generate"]).tolist()
        results.append(result)
    print(json.dumps(results))
    """
)
GENERATE = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}


def load_in_fresh_python(cases: list[dict]) -> list[dict]:
    """Load exported folders in one fresh interpreter (cheaper than one per folder) and run them."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT], input=json.dumps(cases), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# name: (tiny_model family, search space, config values over a random sample, loads with stock classes)
EXPORT_CASES = {
    "bert-small": ("bert", "small", {"num_layers": 2, "num_heads": 4, "num_units": 20}, True),
    "bert-medium": ("bert", "medium", {"num_heads_1": 0}, False),  # a layer without attention must export too
    "roberta-layer": ("roberta", "layer", {"layer_0": 1, "layer_1": 0, "layer_2": 1}, True),
    "roberta-large": ("roberta", "large", {}, False),
    # mean pooling has no stock config: even a uniformly cut (or the full) model ships the modeling file
    "bert-mean-small": ("bert-mean", "small", {"num_layers": 2, "num_heads": 4, "num_units": 20}, False),
    "roberta-mean-medium": ("roberta-mean", "medium", {"num_heads_1": 0}, False),
    # GQA: 1 of 2 key/value groups with 2 of its 2 query heads in both kept layers -> a stock LlamaConfig
    "llama-small": (
        "llama",
        "small",
        {"num_layers": 2, "num_kv_groups": 1, "num_heads_per_group": 2, "num_units": 20},
        True,
    ),
    "mistral-layer": ("mistral", "layer", {"layer_0": 0, "layer_1": 1, "layer_2": 1}, True),
    "qwen2-large": ("qwen2", "large", {"group_0_0": 1, "group_head_0_0": 1}, False),
    "qwen3-medium": (
        "qwen3",
        "medium",
        {"num_kv_groups_0": 0},
        False,
    ),  # first layer without attention: cache slots shift
    "llama-cls-medium": ("llama-cls", "medium", {"num_units_2": 0}, False),
    "gpt2-layer": ("gpt2", "layer", {"layer_0": 1, "layer_1": 0, "layer_2": 1}, True),
    "gpt2-small": (
        "gpt2",
        "small",
        {"num_layers": 2, "num_heads": 3, "num_units": 20},
        False,
    ),  # fewer heads: never stock
    "gpt2-cls-large": ("gpt2-cls", "large", {"head_0_1": 0}, False),
}


@dataclass
class Exported:
    result: object  # ExportResult
    folder_files: set[str]
    masked_logits: np.ndarray
    masked_generated: list | None
    loaded: dict


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tokenizer) -> dict[str, Exported]:
    """Every EXPORT_CASES sub-network exported, compared in-process, and loaded back in one fresh Python."""
    cases, exported = [], {}
    for name, (family, space_name, overrides, _) in EXPORT_CASES.items():
        model, adapter = family_model(family)
        space = make_search_space(space_name, adapter.shape(model))
        config = {**space.sample(np.random.default_rng(3)), **overrides}
        subnet = space.to_subnetwork(config)
        out = tmp_path_factory.mktemp(name) / "out"
        result = export_subnetwork(model, tokenizer, adapter, subnet, out, provenance={"config": config})
        batch = inputs(model)
        prompt = inputs(model, batch=2, length=4, seed=5) if family in DECODERS else None
        if prompt:
            prompt["attention_mask"][:] = 1
        with torch.inference_mode(), adapter.masked(model, subnet):
            masked = model(**batch).logits.numpy()
            generated = model.generate(**prompt, **GENERATE).tolist() if prompt else None
        assert not list(out.parent.glob(".out.*")), "staging folder left behind"
        exported[name] = Exported(result, {p.name for p in out.iterdir()}, masked, generated, {})
        cases.append(
            {
                "path": str(out),
                "remote": result.needs_remote_code,
                "batch": {k: v.tolist() for k, v in batch.items()},
                "prompt": prompt and {k: v.tolist() for k, v in prompt.items()},
                "generate": GENERATE,
            }
        )
    for record, loaded in zip(exported.values(), load_in_fresh_python(cases)):
        record.loaded = loaded
    return exported


@pytest.mark.parametrize("name", list(EXPORT_CASES))
def test_export_loads_with_plain_transformers(exports, name):
    stock = EXPORT_CASES[name][3]
    record = exports[name]
    assert record.result.needs_remote_code is not stock
    modeling_files = {f for f in record.folder_files if f.startswith("modeling_nas_tune")}
    assert bool(modeling_files) is not stock
    card = (record.result.path / "README.md").read_text()
    assert all(
        f"carries its own modeling code (`{name}`" in card for name in modeling_files
    )  # the card names the file it ships
    if stock:
        assert record.loaded["module"].startswith("transformers.models.")  # the stock class, not a copied file
    np.testing.assert_allclose(np.array(record.loaded["logits"]), record.masked_logits, atol=1e-4)
    assert record.loaded["numel"] == record.result.total_params
    assert record.loaded.get("generated") == record.masked_generated  # greedy tokens with the KV cache
