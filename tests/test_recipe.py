"""The super-network recipe: label-prior head start, size-aware sampling, fixed teacher, two-stage start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas_tune.errors import UserError
from nas_tune.metrics.parameters import layer_fraction
from nas_tune.models import LoadedModel, adapter_for, bundled_model_path, load_finetuned
from nas_tune.pareto import range_hypervolume
from nas_tune.search_space import make_search_space
from nas_tune.supernet import FinetuneConfig, finetune
from nas_tune.supernet.head import initialise_head_bias, label_prior_bias
from nas_tune.supernet.sampling import SamplingOptions, SubnetSampler
from nas_tune.supernet.strategies import require_distillation
from tests.conftest import tiny_model
from tests.test_supernet import TASK, toy_split

ADAPTER = adapter_for("bert")


def test_label_prior_bias_is_the_mean_or_the_log_class_frequency():
    assert torch.allclose(label_prior_bias(torch.tensor([1.0, 2.0, 6.0]), 1), torch.tensor([3.0]))
    bias = label_prior_bias(torch.tensor([0, 0, 0, 1]), 2)  # add-one smoothed: 4/6, 2/6
    assert torch.allclose(torch.softmax(bias, 0), torch.tensor([4 / 6, 2 / 6]))


def test_only_a_fresh_head_starts_at_the_prior():
    fresh = LoadedModel(tiny_model("bert", num_labels=1), None, ADAPTER, "tiny", head_is_new=True)
    assert initialise_head_bias(fresh, torch.tensor([2.0, 4.0]))
    assert fresh.model.classifier.bias.item() == pytest.approx(3.0) and not fresh.head_is_new
    trained = LoadedModel(tiny_model("bert", num_labels=1), None, ADAPTER, "tiny")
    before = trained.model.classifier.bias.clone()
    assert not initialise_head_bias(trained, torch.tensor([2.0, 4.0]))
    assert torch.equal(trained.model.classifier.bias, before)


def sizes(options: SamplingOptions, draws: int = 4000) -> np.ndarray:
    model = tiny_model("bert")
    shape = ADAPTER.shape(model)
    sampler = SubnetSampler(make_search_space("small", shape), ADAPTER, shape, options)
    rng = np.random.default_rng(0)
    return np.array([sampler.fraction(sampler.sample(rng)) for _ in range(draws)])


def test_stratified_sampling_covers_every_size_bin_evenly():
    uniform, stratified = sizes(SamplingOptions()), sizes(SamplingOptions("stratified"))
    assert (uniform > 0.75).mean() < 0.1  # uniform draws rarely train large sub-networks ...
    shares = np.histogram(stratified, bins=[0, 0.25, 0.5, 0.75, 1.0 + 1e-9])[0] / len(stratified)
    assert np.allclose(shares, 0.25, atol=0.03), shares  # ... stratified ones give each quarter a quarter of the draws
    bounded = sizes(SamplingOptions("uniform", min_params=0.4), draws=500)
    assert bounded.min() >= 0.4


def test_uniform_sampling_draws_what_the_space_draws():
    model = tiny_model("bert")
    shape = ADAPTER.shape(model)
    space = make_search_space("small", shape)
    sampler = SubnetSampler(space, ADAPTER, shape, SamplingOptions())
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [sampler.sample(a) for _ in range(5)] == [space.to_subnetwork(space.sample(b)) for _ in range(5)]
    assert layer_fraction(ADAPTER, shape, space.to_subnetwork(space.largest())) == 1.0


def test_bad_sampling_and_teacher_options_are_refused():
    with pytest.raises(UserError, match="--min-params"):
        FinetuneConfig(min_params=1.0)
    with pytest.raises(UserError, match="--sampling"):
        FinetuneConfig(sampling="even")
    with pytest.raises(UserError, match="--head-init"):
        FinetuneConfig(head_init="mean")
    with pytest.raises(UserError, match="cannot use --teacher"):
        require_distillation("sandwich")
    require_distillation("one_shot")


def test_a_fixed_teacher_never_changes_and_max_steps_ends_training(tmp_path, tokenizer):
    teacher = tiny_model("bert", seed=7)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loaded = LoadedModel(tiny_model("bert", seed=3), tokenizer, ADAPTER, "tiny")
    config = FinetuneConfig(strategy="sandwich_kd", epochs=3, batch_size=16, lr=1e-3, seed=5, max_steps=4)
    result = finetune(
        loaded,
        TASK,
        toy_split(48),
        toy_split(32, seed=1),
        config,
        tmp_path / "run",
        show_progress=False,
        teacher=teacher,
    )
    assert result.steps == 4  # 3 epochs of 3 steps would be 9
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_two_stage_starts_from_the_finetuned_model_bit_for_bit(tiny_model_dir):
    loaded = load_finetuned(str(tiny_model_dir), 2, str(tiny_model_dir), option="--init-from")
    reference = tiny_model("bert")  # what tiny_model_dir holds
    assert all(torch.equal(reference.state_dict()[k], v) for k, v in loaded.model.state_dict().items())
    assert not loaded.head_is_new  # its trained head is kept, not reset to the prior


def test_init_from_and_teacher_must_be_classifiers_of_the_same_architecture(tmp_path, tiny_model_dir, tokenizer):
    with pytest.raises(UserError, match="not a fine-tuned classifier"):
        load_finetuned(str(bundled_model_path()), 2, None, option="--teacher")
    with pytest.raises(UserError, match="another architecture"):
        load_finetuned(str(tiny_model_dir), 2, None, option="--init-from")  # tiny BERT vs. the bundled MiniLM
    with pytest.raises(UserError, match="3 labels|2 labels"):
        load_finetuned(str(tiny_model_dir), 3, str(tiny_model_dir), option="--init-from")
    with pytest.raises(UserError, match="not a folder"):
        load_finetuned(str(tmp_path / "missing"), 2, str(tiny_model_dir), option="--teacher")


def test_range_hypervolume_equals_a_brute_force_count():
    rng = np.random.default_rng(1)
    points = rng.random((12, 2))
    lower = np.array([0.0, 0.2])
    grid = (np.arange(400) + 0.5) / 400
    error, params = np.meshgrid(grid, lower[1] + grid * (1 - lower[1]), indexing="ij")
    cells = np.stack([error.ravel(), params.ravel()], axis=1)
    dominated = (np.maximum(points, lower)[None] <= cells[:, None]).all(axis=2).any(axis=1)
    assert range_hypervolume(points, lower) == pytest.approx(dominated.mean(), abs=5e-3)
    assert range_hypervolume(np.array([[0.5, 0.01]]), lower) == pytest.approx(0.5)  # a tiny model counts as if at 20 %


def test_the_two_stage_recipe_runs_both_stages_counts_both_and_resumes_without_retraining(
    tmp_path, tiny_model_dir, glue_dir, capsys
):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "launchers"))
    import local

    from nas_tune.cli.pipeline_options import parse_pipeline_args, pipeline_config

    output = tmp_path / "run"
    argv = [
        "--model",
        str(tiny_model_dir),
        "--dataset",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "64",
        "--max-validation-samples",
        "32",
        "--max-test-samples",
        "32",
        "--max-seq-length",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--num-trials",
        "4",
        "--recipe",
        "two_stage",
        "--second-stage-steps",
        "2",
        "--output",
        str(output),
    ]
    assert local.main(argv) == 0
    repeated = parse_pipeline_args(local.parser(), ["--config", str(output / "run.yaml")])  # the run's options, saved
    assert pipeline_config(repeated) == pipeline_config(parse_pipeline_args(local.parser(), argv))
    standard = json.loads((output / "standard" / "supernet.json").read_text())
    supernet = json.loads((output / "supernet" / "supernet.json").read_text())
    assert (
        standard["strategy"] == "standard" and standard["status"] == "completed" and standard["steps"] == 4
    )  # 64 examples / 16
    assert supernet["strategy"] == "sandwich_kd" and supernet["steps"] == 2
    assert supernet["options"]["init_from"] == supernet["options"]["teacher"] == str((output / "standard").resolve())
    assert "standard fine-tuning (first of two stages)" in (output / "report.html").read_text()
    capsys.readouterr()
    assert local.main([*argv, "--resume"]) == 0  # both stages are done: neither is trained again
    assert "[1/3]" not in capsys.readouterr().out
    assert json.loads((output / "standard" / "supernet.json").read_text())["train_seconds"] == standard["train_seconds"]
    refused = tmp_path / "refused"
    assert local.main([*argv[:-1], str(refused), "--strategy", "standard"]) == 2
    assert "does not distil" in capsys.readouterr().err and not refused.exists()
