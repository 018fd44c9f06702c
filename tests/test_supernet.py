"""Super-network strategies and the training loop on a tiny model and a learnable toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nas_tune.data import GLUE_TASKS, TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.models import LoadedModel, adapter_for
from nas_tune.search_space import make_search_space
from nas_tune.supernet import STRATEGIES, FinetuneConfig, StrategyOptions, finetune, make_strategy
from nas_tune.supernet import train as train_module
from nas_tune.supernet.strategies import LinearRandom
from tests.conftest import DECODER_VOCAB, tiny_model

TASK = GLUE_TASKS["rte"]


def toy_split(n: int = 64, length: int = 8, seed: int = 0) -> TokenizedSplit:
    """Label = whether the first token is even: learnable by a tiny transformer in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, 200, (n, length), generator=generator)
    return TokenizedSplit(ids, torch.ones_like(ids), torch.zeros_like(ids), (ids[:, 0] % 2 == 0).long())


def strategy_for(name, model, space_name="small", seed=0, **options):
    adapter = adapter_for("bert")
    space = make_search_space(space_name, adapter.shape(model))
    return make_strategy(name, adapter, space, np.random.default_rng(seed), StrategyOptions(**options))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_lowers_the_loss(name):
    model = tiny_model("bert").train()
    strategy = strategy_for(name, model)
    data = toy_split()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = next(data.batches(64))
    losses = []
    for step in range(25):
        optimizer.zero_grad()
        losses.append(strategy.step(model, batch, progress=step / 25))
        optimizer.step()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def grads_by_layer(model, adapter):
    """Which query-weight rows (by head) and which FFN neurons got a non-zero gradient, per layer."""
    heads, units = [], []
    for layer in adapter.layers(model):
        query = layer.attention.self.query.weight.grad
        heads.append(query.abs().view(4, -1).sum(1) > 0 if query is not None else torch.zeros(4, dtype=torch.bool))
        inter = layer.intermediate.dense.weight.grad
        units.append(inter.abs().sum(1) > 0 if inter is not None else torch.zeros(37, dtype=torch.bool))
    return heads, units


def test_sandwich_updates_largest_and_smallest_subnetworks():
    model = tiny_model("bert").train()
    adapter = adapter_for("bert")
    strategy = strategy_for("sandwich", model, num_random_subnets=0)
    strategy.step(model, next(toy_split().batches(16)), progress=0.0)
    heads, units = grads_by_layer(model, adapter)
    assert all(h.all() for h in heads) and all(u.all() for u in units)  # largest: everything
    # smallest alone touches only the first head / neuron of the first layer
    model.zero_grad(set_to_none=True)
    strategy._train_on_labels(model, [strategy.smallest], next(toy_split().batches(16)))
    heads, units = grads_by_layer(model, adapter)
    assert heads[0].tolist() == [True, False, False, False]
    assert units[0].sum() == 1 and units[0][0]
    assert not heads[1].any() and not units[2].any()


def test_kd_uses_the_teachers_outputs(monkeypatch):
    model = tiny_model("bert").train()
    batch = next(toy_split().batches(16))
    strategy = strategy_for("kd", model, seed=1, temperature=2.0)
    from nas_tune.supernet import strategies

    losses = []
    original = strategies.distillation_loss
    for shift in (0.0, 5.0):

        def shifted_distillation(student, teacher, temperature, regression, shift=shift):
            return original(student, teacher + torch.tensor([shift, -shift]), temperature, regression)

        monkeypatch.setattr(strategies, "distillation_loss", shifted_distillation)
        strategy.rng = np.random.default_rng(1)
        model.zero_grad()
        losses.append(strategy.step(model, batch, progress=0.5))
        monkeypatch.setattr(strategies, "distillation_loss", original)
    assert losses[1] > losses[0] + 0.1


def test_distillation_loss_is_zero_when_student_matches_teacher_and_mse_for_regression():
    from nas_tune.supernet.strategies import distillation_loss

    logits = torch.randn(4, 3)
    assert distillation_loss(logits, logits, 10.0, regression=False).abs() < 1e-6
    assert distillation_loss(logits, logits + 1.0, 1.0, regression=False).abs() < 1e-6  # softmax shift invariance
    values = torch.tensor([[1.0], [2.0]])
    assert distillation_loss(values, values + 2.0, 10.0, regression=True) == pytest.approx(4.0)


def test_linear_random_probability_schedule():
    model = tiny_model("bert")
    strategy = strategy_for("linear_random", model)
    assert isinstance(strategy, LinearRandom)
    assert [strategy.probability(p) for p in (0.0, 0.25, 1.0, 1.5)] == [0.0, 0.25, 1.0, 1.0]
    # at progress 0 only the full network is trained, at progress 1 only random sub-networks
    calls = []
    strategy._train_on_labels = lambda model, subnets, batch: calls.append(subnets) or 0.0
    for progress in (0.0, 1.0):
        strategy.step(model, None, progress)
    assert calls[0] == [strategy.largest] and calls[1] != [strategy.largest]


def test_unknown_strategy_and_bad_options_are_user_errors():
    with pytest.raises(UserError, match="sandwich_kd"):
        FinetuneConfig(strategy="sandwhich")
    with pytest.raises(UserError, match="epochs"):
        FinetuneConfig(epochs=0)
    assert FinetuneConfig(strategy="one_shot").strategy == "sandwich_kd"


def run_finetune(tmp_path, tokenizer, name, **kwargs):
    loaded = LoadedModel(tiny_model("bert", seed=3), tokenizer, adapter_for("bert"), "tiny")
    config = FinetuneConfig(strategy="sandwich_kd", epochs=2, batch_size=16, lr=1e-3, save_steps=3, seed=5)
    return finetune(
        loaded, TASK, toy_split(48), toy_split(32, seed=1), config, tmp_path / name, show_progress=False, **kwargs
    ), loaded


class Killed(Exception):
    """Stands for a kill: raised in the middle of the training loop, where no code of finetune runs after it."""


def run_killed(monkeypatch, tmp_path, tokenizer, name, after_steps):
    """run_finetune killed at the start of step `after_steps + 1` (the strategy raises there); the steps done."""
    real = train_module.make_strategy
    done = []

    def make_strategy(*args, **kwargs):
        strategy = real(*args, **kwargs)
        step = strategy.step

        def killed_step(*step_args, **step_kwargs):
            if len(done) == after_steps:
                raise Killed
            done.append(step(*step_args, **step_kwargs))
            return done[-1]

        strategy.step = killed_step
        return strategy

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(train_module, "make_strategy", make_strategy)
        run_finetune(tmp_path, tokenizer, name)
    return len(done)


def saved_step(folder) -> int:
    return torch.load(folder / "training_state" / "state.pt", weights_only=True)["global_step"]


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, tokenizer, monkeypatch):
    straight, _ = run_finetune(tmp_path, tokenizer, "straight")
    assert run_killed(monkeypatch, tmp_path, tokenizer, "resumed", after_steps=4) == 4
    assert saved_step(tmp_path / "resumed") == 3  # save_steps=3: step 4 is lost with the kill and trained again
    resumed, _ = run_finetune(tmp_path, tokenizer, "resumed", resume=True)
    assert resumed.steps == straight.steps == 6
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = (tmp_path / "straight" / "supernet.json").read_text()
    assert '"status": "completed"' in meta and "largest_accuracy" in meta
    assert not (tmp_path / "straight" / "training_state").exists()
    logged = [line.split(",")[0] for line in (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()[1:]]
    assert logged == [str(i) for i in range(1, 7)]  # each step logged once despite the interruption


def test_output_folder_protection(tmp_path, tokenizer, monkeypatch):
    run_killed(monkeypatch, tmp_path, tokenizer, "run", after_steps=3)
    with pytest.raises(UserError, match="--resume"):
        run_finetune(tmp_path, tokenizer, "run")
    loaded = LoadedModel(tiny_model("bert"), tokenizer, adapter_for("bert"), "tiny")
    other = FinetuneConfig(strategy="sandwich", epochs=2, batch_size=16, lr=1e-3, save_steps=3, seed=5)
    with pytest.raises(UserError, match="other options"):
        finetune(loaded, TASK, toy_split(48), toy_split(32), other, tmp_path / "run", resume=True, show_progress=False)
    assert (tmp_path / "run" / "training_state").is_dir()  # nothing lost


def test_reorder_importance_is_wired_into_finetuning(tmp_path, tiny_model_dir, glue_dir):
    from nas_tune.data import DataConfig
    from nas_tune.supernet import read_supernet_meta
    from nas_tune.supernet.run import finetune_supernet

    data = DataConfig("rte", data_dir=str(glue_dir), max_train_samples=128, max_validation_samples=16)
    config = FinetuneConfig(epochs=1, batch_size=64)
    finetune_supernet(str(tiny_model_dir), data, config, tmp_path / "plain", max_seq_length=32, show_progress=False)
    finetune_supernet(
        str(tiny_model_dir),
        data,
        config,
        tmp_path / "sorted",
        max_seq_length=32,
        show_progress=False,
        reorder="importance",
    )
    assert read_supernet_meta(tmp_path / "sorted")["options"]["reorder"] == "importance"
    plain = load_file(str(tmp_path / "plain" / "model.safetensors"))
    ordered = load_file(str(tmp_path / "sorted" / "model.safetensors"))
    key = next(k for k in plain if k.endswith("layer.0.intermediate.dense.weight"))
    assert not torch.equal(plain[key], ordered[key])  # neurons were permuted before training
    assert torch.allclose(plain[key].sum(), ordered[key].sum(), atol=0.5)  # ... not replaced


@pytest.mark.parametrize("family", ["bert", "bert-mean", "llama-cls", "gpt2-cls"])
def test_gradient_checkpointing_gives_the_same_gradients_on_sliced_subnetworks(family):
    """Checkpointed layers run again in the backward pass; they must see the sub-network's sliced weights there too."""
    gradients, losses = [], []
    for checkpointing in (False, True):
        model = tiny_model(family).train()
        if checkpointing:
            train_module.enable_gradient_checkpointing(model)
        adapter = adapter_for(model.config.model_type)
        space = make_search_space("small", adapter.shape(model))
        strategy = make_strategy("sandwich_kd", adapter, space, np.random.default_rng(3))
        batch = next(toy_split(16).batches(16))
        batch["input_ids"] = batch["input_ids"] % DECODER_VOCAB  # in every tiny family's vocabulary
        losses.append(strategy.step(model, batch, progress=0.5))
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert gradients[1].keys() == gradients[0].keys()
    for name, plain in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], plain, rtol=1e-5, atol=1e-7, msg=name)


def test_gradient_checkpointing_recomputes_instead_of_keeping_activations():
    """With it on, each layer's forward runs twice per backward (the recompute); off, once."""
    calls = []
    for checkpointing in (False, True):
        model = tiny_model("bert").train()
        if checkpointing:
            train_module.enable_gradient_checkpointing(model)
        layer = model.bert.encoder.layer[0].intermediate
        handle = layer.register_forward_hook(lambda *args, on=checkpointing: calls.append(on))
        strategy_for("standard", model).step(model, next(toy_split(8).batches(8)), progress=0.0)
        handle.remove()
    assert calls.count(False) == 1 and calls.count(True) == 2


def test_a_model_without_gradient_checkpointing_is_refused_in_one_sentence(monkeypatch):
    model = tiny_model("bert")
    monkeypatch.setattr(type(model), "supports_gradient_checkpointing", False)
    with pytest.raises(UserError, match="drop --gradient-checkpointing"):
        train_module.enable_gradient_checkpointing(model)
