"""Baselines on tiny decoders (LLaMA with GQA, Qwen2 with groups of 3, GPT-2): ShortGPT's block influence, LLM-Pruner's
Taylor scores, the GQA-valid mask search, and the command line on text."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

from nas_tune.baselines import BaselineInputs, BaselineSettings
from nas_tune.baselines.importance import search_mask
from nas_tune.baselines.layer_drop import LayerDrop, block_influence
from nas_tune.cli import main as cli_main
from nas_tune.data import TokenizedSplit
from nas_tune.data.tasks import language_modelling_task
from nas_tune.metrics import count_parameters
from nas_tune.models import LoadedModel, adapter_for
from nas_tune.pruning.reorder import reorder_by_importance
from nas_tune.pruning.scores import Scores, first_order_scores, mask_gradients, taylor_scores, training_sample
from tests.conftest import DECODER_VOCAB, save_tiny_llama, tiny_decoder, write_text_splits


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blocks(n: int = 32, length: int = 10, seed: int = 0) -> TokenizedSplit:
    """Random blocks of text: every position a next-token target, as `tokenize_split` makes them for causal LM."""
    ids = torch.randint(3, DECODER_VOCAB, (n, length), generator=torch.Generator().manual_seed(seed))
    return TokenizedSplit(ids, torch.ones_like(ids), None, ids.clone())


def output_projections(model, family: str, layer: int):
    """The projection reading layer `layer`'s heads and the one reading its FFN neurons (GPT-2: Conv1D, [in, out])."""
    block = adapter_for(model.config.model_type).layers(model)[layer]
    return (block.attn.c_proj, block.mlp.c_proj) if family == "gpt2" else (block.self_attn.o_proj, block.mlp.down_proj)


def silence_inputs(linear, family: str, inputs: slice | int) -> None:
    """Zero the weights that read `inputs`: what they read no longer reaches the output."""
    with torch.no_grad():
        if family == "gpt2":
            linear.weight[inputs, :] = 0
        else:
            linear.weight[:, inputs] = 0


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_block_influence_drops_the_layer_made_an_identity_first(family):
    model = tiny_decoder(family)
    for linear in output_projections(model, family, 1):  # attention and FFN add nothing: layer 1's output is its input
        with torch.no_grad():
            linear.weight.zero_()
            if linear.bias is not None:
                linear.bias.zero_()
    adapter = adapter_for(model.config.model_type)
    influence = block_influence(model, adapter, blocks(), batch_size=8)
    assert abs(float(influence[1])) < 1e-12 and (influence[[0, 2]] > 1e-3).all()
    data = blocks(160, seed=1)
    inputs = BaselineInputs(
        LoadedModel(model, None, adapter, "tiny"), language_modelling_task("text"), data, blocks(), blocks()
    )
    dropping = LayerDrop(inputs, BaselineSettings(budgets=(0.4, 0.7), layer_choice="block_influence", num_samples=128))
    dropping.prepare()
    assert dropping.ranking[-1] == 1
    two = dropping.prune({"num_layers": 2})
    assert two.subnet.layers == (0, 2) and two.model is model  # no retraining: the model itself is cut


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_taylor_importance_ranks_a_zeroed_head_and_channel_last(family):
    model = tiny_decoder(family)
    adapter = adapter_for(model.config.model_type)
    shape = adapter.shape(model)
    head_reader, unit_reader = output_projections(model, family, 1)
    silence_inputs(head_reader, family, slice(2 * shape.head_dim, 3 * shape.head_dim))  # head 2 of layer 1
    silence_inputs(unit_reader, family, 7)  # FFN channel 7 of layer 1
    scores = taylor_scores(mask_gradients(model, adapter, blocks(), batch_size=8))
    assert scores.heads[1, 2] == 0 and int(scores.heads.flatten().argmin()) == 1 * shape.num_heads + 2
    assert scores.units[1, 7] == 0 and int(scores.units.flatten().argmin()) == 1 * shape.ffn_size + 7
    assert (scores.heads.flatten().sort().values[1:] > 0).all()


def test_mask_search_drops_a_silent_key_value_group_whole():
    model = tiny_decoder("llama")  # 4 query heads in 2 key/value groups
    adapter = adapter_for("llama")
    shape = adapter.shape(model)
    silence_inputs(
        output_projections(model, "llama", 1)[0], "llama", slice(2 * shape.head_dim, 4 * shape.head_dim)
    )  # group 1
    scores = taylor_scores(mask_gradients(model, adapter, blocks(), batch_size=8))
    full = shape.num_layers * adapter.layer_parameter_count(shape, 4, shape.ffn_size)
    group = adapter.layer_parameter_count(shape, 4, 0) - adapter.layer_parameter_count(shape, 2, 0, num_kv_heads=1)
    subnet = search_mask(
        Scores(scores.heads, scores.units + 1e9), shape, adapter, (full - group) / full
    )  # channels too dear to drop
    assert subnet.heads[1] == (0, 1) and subnet.heads[0] == subnet.heads[2] == (0, 1, 2, 3)
    assert subnet.kept_kv_heads(shape)[1] == (0,) and subnet.gqa_problem(shape) is None


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_mask_search_is_gqa_valid_within_budget_and_beats_every_other_head_choice(family):
    model = tiny_decoder(family)
    adapter = adapter_for(model.config.model_type)
    shape = adapter.shape(model)
    generator = torch.Generator().manual_seed(1)
    scores = Scores(
        torch.rand(shape.num_layers, shape.num_heads, generator=generator, dtype=torch.float64) * 50,
        torch.rand(shape.num_layers, shape.ffn_size, generator=generator, dtype=torch.float64),
    )
    fixed = adapter.layer_parameter_count(shape, 0, 0, num_kv_heads=0)
    unit_cost = adapter.layer_parameter_count(shape, 0, 1, num_kv_heads=0) - fixed
    full = shape.num_layers * adapter.layer_parameter_count(shape, shape.num_heads, shape.ffn_size)
    ranked_units = scores.units.flatten().sort(descending=True).values
    # every GQA-valid head set of a layer: g groups (any), q heads in each (any)
    group = shape.group_size
    layer_options = [()]
    for kept in range(1, shape.kv_heads + 1):
        for groups in itertools.combinations(range(shape.kv_heads), kept):
            for per_group in range(1, group + 1):
                for picks in itertools.product(
                    *(itertools.combinations(range(g * group, (g + 1) * group), per_group) for g in groups)
                ):
                    layer_options.append(tuple(sorted(h for pick in picks for h in pick)))
    if len(layer_options) ** shape.num_layers > 5_000:  # qwen2: 34 per layer; every other one, still a bound to beat
        layer_options = layer_options[::2]

    def best_total(budget: float) -> float:
        allowed = int(budget * full) - shape.num_layers * fixed
        best = -1.0
        for choice in itertools.product(layer_options, repeat=shape.num_layers):
            cost = sum(
                adapter.layer_parameter_count(shape, len(h), 0, num_kv_heads=len({x // group for x in h})) - fixed
                for h in choice
            )
            if cost <= allowed:
                units = min((allowed - cost) // unit_cost, len(ranked_units))
                best = max(
                    best,
                    sum(float(scores.heads[i, list(h)].sum()) for i, h in enumerate(choice))
                    + float(ranked_units[:units].sum()),
                )
        return best

    for budget in (0.15, 0.4, 0.65, 0.9):
        subnet = search_mask(scores, shape, adapter, budget)
        assert subnet.gqa_problem(shape) is None
        assert count_parameters(model, adapter, subnet).layer_fraction <= budget
        total = float(
            scores.heads[subnet.head_mask(shape).bool()].sum() + scores.units[subnet.unit_mask(shape).bool()].sum()
        )
        assert total >= best_total(budget) - 1e-9
        adapter.extract(model, subnet)  # a valid model of that shape


# --- the command line on text ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tokenizer):
    """A tiny GQA LLaMA saved as a folder, an OPT (a family nas-tune cannot prune), and Shakespeare cut into three files."""
    root = tmp_path_factory.mktemp("decoder_baselines")
    save_tiny_llama(root / "llama", tokenizer, num_layers=3)
    OPTForCausalLM(
        OPTConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            ffn_dim=32,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=64,
        )
    ).save_pretrained(root / "opt")
    tokenizer.save_pretrained(root / "opt")
    splits = write_text_splits(root, {"train": (0, 14000), "validation": (14000, 16000), "test": (16000, 18000)})
    files = [arg for split, path in splits.items() for arg in (f"--{split}-file", str(path))]
    return root, ["--dataset", "text", *files, "--max-seq-length", "16", "--num-samples", "128", "--budgets", "0.5"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "options", "remote"),
    [
        ("importance", [], True),  # per-layer heads and channels: the decoder modeling file
        ("layer_drop", ["--layer-choice", "block_influence"], False),  # whole layers: a stock LLaMA config
    ],
)
def test_cli_prunes_a_causal_lm_and_its_exports_generate(capsys, text_run, name, options, remote):
    root, common = text_run
    output = root / f"run-{name}"
    code, out, err = run_cli(
        capsys, "baseline", name, "--model", root / "llama", *common, *options, "--export", "--output", output
    )
    assert code == 0, err
    assert "test_perplexity" in out and f"{name}: 1 pruned models" in out
    row = json.loads((output / "trials.jsonl").read_text().splitlines()[0])
    assert row["metrics"]["params"] <= 0.5 and row["metrics"]["test_error"] == pytest.approx(
        1 - 1 / row["metrics"]["test_perplexity"]
    )
    (folder,) = (output / "models").iterdir()
    config = json.loads((folder / "config.json").read_text())
    assert ("auto_map" in config) == remote
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=remote).eval()
    prompt = torch.tensor([[101, 2000, 2022, 2030]])
    tokens = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, min_new_tokens=4, do_sample=False
    )
    assert tokens.shape == (1, 8)


def test_cli_refuses_a_decoder_family_it_cannot_prune_in_one_sentence(capsys, text_run):
    root, common = text_run
    for name in ("importance", "layer_drop"):
        code, _, err = run_cli(capsys, "baseline", name, "--model", root / "opt", *common, "--output", root / "opt-run")
        assert (
            code == 2
            and "model type 'opt' is not supported; supported types: bert, gpt2, llama, mistral, qwen2, qwen3, roberta"
            in err
        )
        assert len(err.strip().splitlines()) == 1 and not (root / "opt-run").exists()


def test_cli_refuses_too_few_calibration_blocks_in_one_sentence(capsys, text_run):
    root, common = text_run
    code, _, err = run_cli(
        capsys,
        "baseline",
        "layer_drop",
        "--model",
        root / "llama",
        *common,
        "--layer-choice",
        "block_influence",
        "--max-train-samples",
        "5",
        "--output",
        root / "few",
    )
    assert code == 2 and "needs at least 128 training examples" in err and "blocks of text" in err
    assert len(err.strip().splitlines()) == 1 and not (root / "few" / "trials.jsonl").exists()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_reorder_by_importance_keeps_a_decoders_function_and_puts_whole_groups_best_first(family):
    """`--reorder importance` on a causal LM: next-token logits unchanged, each layer's neurons and (GQA) key/value
    groups sorted by their first-order importance."""
    model = tiny_decoder(family)
    adapter = adapter_for(model.config.model_type)
    train, probe = blocks(160, seed=3), blocks(8, seed=4).input_ids
    with torch.no_grad():
        logits = model(probe).logits
    reordering = reorder_by_importance(LoadedModel(model, None, adapter, "tiny"), train, num_samples=128, seed=0)
    with torch.no_grad():
        assert torch.allclose(model(probe).logits, logits, atol=1e-5, rtol=0)
    assert any(order != tuple(range(len(order))) for order in reordering.units)  # something really moved
    shape = adapter.shape(model)
    sample = training_sample(train, 128, 0, "reorder")  # the blocks the reordering scored
    after = first_order_scores(mask_gradients(model, adapter, sample))
    group = shape.num_heads // (shape.num_kv_heads or shape.num_heads)  # GPT-2: every head its own group
    for layer in range(shape.num_layers):
        assert (after.units[layer][:-1] >= after.units[layer][1:] - 1e-6).all()
        groups = after.heads[layer].view(-1, group).sum(-1)
        assert (groups[:-1] >= groups[1:] - 1e-6).all()
