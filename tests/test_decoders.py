"""Decoder specifics: grouped-query attention in the search spaces, generate() with a KV cache, classifiers, bad input."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, GPTNeoXConfig

from nas_tune.cli import main
from nas_tune.errors import UserError
from nas_tune.metrics import count_flops, count_parameters
from nas_tune.models import SubNetwork, adapter_for, load_model
from nas_tune.search_space import SEARCH_SPACES, make_search_space
from tests.conftest import DECODERS, tiny_decoder, tiny_model
from tests.test_models import GENERATE, family_model, inputs


@pytest.mark.parametrize("family", list(DECODERS))
@pytest.mark.parametrize("space_name", list(SEARCH_SPACES))
def test_every_config_of_every_space_is_a_valid_gqa_subnetwork(family, space_name):
    model, adapter = family_model(family)
    shape = adapter.shape(model)
    space = make_search_space(space_name, shape)
    rng = np.random.default_rng(4)
    assert space.to_subnetwork(space.largest()) == SubNetwork.full(shape)
    for config in [space.smallest()] + [space.sample(rng) for _ in range(50)]:
        subnet = space.to_subnetwork(config)
        assert subnet.gqa_problem(shape) is None
        for heads in subnet.kept_heads():
            per_group = Counter(h // shape.group_size for h in heads)
            assert len(set(per_group.values())) <= 1 and max(per_group.values(), default=0) <= shape.group_size


def test_small_space_of_9_query_and_3_kv_heads_keeps_first_heads_of_first_groups():
    from nas_tune.models import ModelShape

    shape = ModelShape(num_layers=2, num_heads=9, head_dim=64, hidden_size=576, ffn_size=1536, num_kv_heads=3)
    space = make_search_space("small", shape)
    assert set(space.config_space()) == {"num_layers", "num_kv_groups", "num_heads_per_group", "num_units"}
    subnet = space.to_subnetwork({"num_layers": 2, "num_kv_groups": 2, "num_heads_per_group": 2, "num_units": 100})
    assert subnet.kept_heads() == [(0, 1, 3, 4)] * 2 and subnet.kept_kv_heads(shape) == [(0, 1)] * 2
    large = make_search_space("large", shape).config_space()
    assert {k for k in large if not k.startswith("unit_")} == {
        f"{kind}_{i}_{j}" for kind in ("group", "group_head") for i in range(2) for j in range(3)
    }


@pytest.mark.parametrize("family", list(DECODERS))
def test_generate_with_cache_is_the_same_masked_sliced_and_extracted(family):
    model, adapter = family_model(family)
    shape = adapter.shape(model)
    prompt = inputs(model, batch=2, length=5, seed=7)
    prompt["attention_mask"][:] = 1
    rng = np.random.default_rng(5)
    for space_name in ("medium", "large"):
        space = make_search_space(space_name, shape)
        for config in (space.smallest(), space.sample(rng)):
            subnet = space.to_subnetwork(config)
            with torch.inference_mode():
                with adapter.masked(model, subnet):
                    masked = model.generate(**prompt, **GENERATE)
                    uncached = model.generate(**prompt, **GENERATE, use_cache=False)
                with adapter.sliced(model, subnet):
                    sliced = model.generate(**prompt, **GENERATE)
                extracted = adapter.extract(model, subnet).generate(**prompt, **GENERATE)
            assert masked.shape[1] > prompt["input_ids"].shape[1]
            assert torch.equal(masked, uncached) and torch.equal(sliced, masked) and torch.equal(extracted, masked), (
                config
            )


def test_biases_everywhere_are_counted_and_the_shape_is_the_same_inside_a_sliced_context():
    model = tiny_decoder("llama", attention_bias=True, mlp_bias=True)
    adapter = adapter_for("llama")
    shape = adapter.shape(model)
    assert shape.features == {"qkv_bias", "o_bias", "mlp_bias"}
    space = make_search_space("medium", shape)
    rng = np.random.default_rng(6)
    batch = inputs(model)
    with torch.inference_mode():
        for config in (space.smallest(), space.sample(rng), space.sample(rng)):
            subnet = space.to_subnetwork(config)
            with adapter.sliced(model, subnet):
                assert adapter.shape(model) == shape
                sliced = model(**batch).logits
            small = adapter.extract(model, subnet)
            torch.testing.assert_close(small(**batch).logits, sliced, atol=1e-5, rtol=1e-4)
            assert count_parameters(model, adapter, subnet).total_params == sum(p.numel() for p in small.parameters())


def test_decoder_flops_by_hand_count_gqa_key_value_heads_and_the_lm_head():
    model, adapter = family_model("llama")  # 4 query / 2 key-value heads of size 8, hidden 32, FFN 37, vocab 96
    shape = adapter.shape(model)
    t = 16
    none = count_flops(model, adapter, SubNetwork.first_k(shape, 0, [0] * 3, [0] * 3), t)
    assert none == 2 * t * 32 * 96  # the LM head on every token
    one_group = SubNetwork.from_layers([0], [(0, 1)] * 3, [range(37)] * 3)  # 2 query heads, 1 key/value head
    per_layer = 2 * t * 32 * (2 * 16 + 2 * 8) + 4 * t * t * 16 + 6 * t * 32 * 37
    assert count_flops(model, adapter, one_group, t) - none == per_layer


def test_decoder_classifier_gets_a_pad_token_and_no_head_bias(tmp_path, tokenizer):
    model, adapter = family_model("llama-cls")
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path)
    decoder_tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    decoder_tokenizer.pad_token = None
    decoder_tokenizer.eos_token = "[SEP]"
    decoder_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), 2)  # a decoder checkpoint whose tokenizer has no pad token
    assert loaded.tokenizer.pad_token == "[SEP]" and loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id
    assert adapter.head_bias(model) is None
    decoder_tokenizer.pad_token = decoder_tokenizer.eos_token = None
    with pytest.raises(UserError, match="neither a pad nor an end-of-sequence token"):
        adapter.prepare_tokenizer(decoder_tokenizer, model)


def test_a_subnetwork_that_breaks_gqa_is_refused_in_one_sentence():
    model, adapter = family_model("qwen2")  # 6 query heads in 2 groups of 3
    shape = adapter.shape(model)
    unequal = SubNetwork.from_layers([0, 1, 2], [(0, 1, 3)] * 3, [range(37)] * 3)  # 2 heads of group 0, 1 of group 1
    refusal = (
        r"^this sub-network is not a valid grouped-query attention model: layer 0 keeps unequal numbers of query heads "
        r"per key/value group \(group 0: 2, group 1: 1\); grouped-query attention needs the same number \(at most 3\)"
    )
    with pytest.raises(UserError, match=refusal):
        adapter.extract(model, unequal)
    for context in (adapter.masked, adapter.sliced):
        with pytest.raises(UserError, match=refusal), context(model, unequal):
            pass
    space = make_search_space("small", shape)
    with pytest.raises(UserError, match="num_heads_per_group=4 is outside the 'small' space"):
        space.to_subnetwork({"num_layers": 1, "num_kv_groups": 1, "num_heads_per_group": 4, "num_units": 3})


@pytest.fixture
def decoder_folders(tmp_path, tokenizer):
    """A tiny LLaMA classifier folder and the config of a family nas-tune cannot prune."""
    llama = tmp_path / "llama"
    tiny_model("llama-cls").save_pretrained(llama)
    tokenizer.save_pretrained(llama)
    neox = tmp_path / "neox"
    GPTNeoXConfig(
        vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    ).save_pretrained(neox)
    return llama, neox


@pytest.mark.parametrize(
    ("model_name", "config", "message"),
    [
        (
            "llama",
            '{"num_layers": 2, "num_kv_groups": 1, "num_heads_per_group": 3, "num_units": 5}',
            "config value num_heads_per_group=3 is outside the 'small' space",
        ),
        (
            "llama",
            '{"num_layers": 2, "num_heads": 3, "num_units": 5}',
            "config does not fit the 'small' space of this 3-layer model: unknown parameters ['num_heads']",
        ),
        (
            "neox",
            "largest",
            "model type 'gpt_neox' is not supported; supported types: bert, gpt2, llama, mistral, qwen2, qwen3, roberta.",
        ),
    ],
)
def test_cli_bad_decoder_input_is_one_sentence_and_exit_code_2(
    capsys, tmp_path, decoder_folders, model_name, config, message
):
    folder = dict(zip(("llama", "neox"), decoder_folders))[model_name]
    capsys.readouterr()  # the fixture's save_pretrained progress
    code = main(
        [
            "export",
            "--model",
            str(folder),
            "--search-space",
            "small",
            "--config",
            config,
            "--output",
            str(tmp_path / "out"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
