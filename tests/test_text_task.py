"""Causal language modelling on plain text: data, blocks, perplexity objective, LM loss and token-level distillation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertLMHeadModel

from nas_tune.cli import main
from nas_tune.data import DataConfig, load_task_data, tokenize_split
from nas_tune.data.tasks import language_modelling_task
from nas_tune.data.text import read_paragraphs
from nas_tune.errors import UserError
from nas_tune.evaluate import language_model_metrics
from nas_tune.metrics.task import language_model_score, next_token_nll, score
from nas_tune.metrics.trivial import trivial_predictor
from nas_tune.models import adapter_for, load_model
from nas_tune.models.loading import ADAPTERS
from nas_tune.search_space import make_search_space
from nas_tune.supernet.head import initialise_head_bias
from nas_tune.supernet.strategies import StrategyOptions, distillation_loss, make_strategy
from tests.conftest import SHAKESPEARE, tiny_config, tiny_llama, write_text_splits

TASK = language_modelling_task("text")
PLAY = "ROMEO. But soft, what light through yonder window breaks?\nIt is the east.\n\n\nJULIET. Ay me!\n\nROMEO. She speaks.\n"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """Train / validation / test texts long enough for a few blocks of 16 MiniLM tokens."""
    return write_text_splits(
        tmp_path_factory.mktemp("text"), {"train": (0, 6000), "validation": (6000, 9000), "test": (9000, 12000)}
    )


@pytest.fixture(scope="module")
def tiny_decoder_dir(tmp_path_factory, tokenizer):
    """A tiny causal BERT (BertLMHeadModel): a decoder whose family adapter exists, so sub-networks work today."""
    path = tmp_path_factory.mktemp("tiny_decoder")
    torch.manual_seed(0)
    config = tiny_config("bert")
    config.is_decoder = True
    BertLMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --- data ------------------------------------------------------------------------------------------------------


def test_paragraphs_join_back_to_the_file_byte_for_byte(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text(PLAY)
    frame = read_paragraphs(path)
    assert "".join(frame["text"]) == PLAY
    assert frame["text"].tolist()[1] == "JULIET. Ay me!\n\n"
    assert len(frame) == 3


def test_shakespeare_is_found_through_the_environment_and_keeps_its_three_files(monkeypatch):
    monkeypatch.setenv("NAS_TUNE_TEXT_DIR", str(SHAKESPEARE))
    data = load_task_data(DataConfig(dataset="shakespeare", max_validation_samples=10**6))
    assert data.task.causal_lm and data.task.metric == "perplexity"
    for split in ("train", "validation", "test"):
        assert "".join(getattr(data, split)["text"]) == (SHAKESPEARE / "shakespeare" / f"{split}.txt").read_text()
    monkeypatch.delenv("NAS_TUNE_TEXT_DIR")
    with pytest.raises(UserError, match="set NAS_TUNE_TEXT_DIR or --data-dir"):
        load_task_data(DataConfig(dataset="shakespeare"))


def test_text_without_validation_file_holds_out_paragraphs_and_tests_on_them(text_files):
    data = load_task_data(DataConfig(dataset="text", train_file=str(text_files["train"]), validation_fraction=0.25))
    paragraphs = read_paragraphs(text_files["train"])
    assert len(data.validation) == round(0.25 * len(paragraphs)) and len(data.train) + len(data.validation) == len(
        paragraphs
    )
    assert data.test is data.validation


def test_blocks_are_fixed_length_windows_on_the_running_text_and_cached(text_files, tokenizer, tmp_path):
    data = load_task_data(
        DataConfig(
            dataset="text",
            train_file=str(text_files["train"]),
            validation_file=str(text_files["validation"]),
            test_file=str(text_files["test"]),
        )
    )
    ids = tokenizer(text_files["test"].read_text(), add_special_tokens=False)["input_ids"]
    split = tokenize_split(data.test, tokenizer, data.task, 16, cache_dir=tmp_path)
    assert split.input_ids.shape == (len(ids) // 16, 16)
    assert split.input_ids.flatten().tolist() == ids[: len(ids) // 16 * 16]
    assert torch.equal(split.labels, split.input_ids) and bool(split.attention_mask.all())
    assert len(list((tmp_path / "tokenized").iterdir())) == 1
    again = tokenize_split(data.test, tokenizer, data.task, 16, cache_dir=tmp_path)
    assert torch.equal(again.input_ids, split.input_ids) and torch.equal(again.labels, split.labels)
    with pytest.raises(UserError, match="fewer than one block of 5000"):
        tokenize_split(data.test, tokenizer, data.task, 5000, cache_dir=None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "text", "--train-file", "EMPTY"], "is empty"),
        (
            ["--dataset", "text", "--train-file", "TRAIN", "--text-columns", "a"],
            "text_columns only apply to classification data",
        ),
        (
            ["--dataset", "text", "--train-file", "TRAIN", "--label-column", "y"],
            "label_column only apply to classification data",
        ),
        (["--dataset", "rte", "--test-file", "TRAIN"], "test_file only applies to language modelling"),
        (["--dataset", "text"], "dataset 'text' needs a plain-text training file"),
        (
            ["--dataset", "text", "--train-file", "TRAIN", "--max-seq-length", "100000"],
            "fewer than one block of 100000",
        ),
    ],
)
def test_bad_text_input_is_one_sentence_exit_2_and_nothing_written(
    capsys, tmp_path, text_files, tiny_decoder_dir, extra, message
):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    argv = [{"EMPTY": str(empty), "TRAIN": str(text_files["train"])}.get(a, a) for a in extra]
    output = tmp_path / "run"
    code, _, err = run(
        capsys, "finetune", "--model", str(tiny_decoder_dir), "--output", str(output), "--max-steps", "1", *argv
    )
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not output.exists()


# --- objective -------------------------------------------------------------------------------------------------


def test_error_is_one_minus_inverse_perplexity_and_uniform_logits_give_the_vocabulary_size():
    logits = torch.zeros(3, 5, 7)
    labels = torch.randint(0, 7, (3, 5))
    labels[0, 2] = -100  # not predicted
    nll, tokens = next_token_nll(logits, labels, reduction="sum")
    assert tokens == 3 * 4 - 1
    metrics = score(TASK, logits, labels)
    assert metrics["perplexity"] == pytest.approx(7.0)
    assert metrics["error"] == pytest.approx(1 - 1 / 7) and metrics["nll"] == pytest.approx(math.log(7))
    assert language_model_score(0.0, 10)["error"] == 0.0 and 0 <= language_model_score(1e4, 1)["error"] <= 1


def test_full_llama_perplexity_equals_the_models_own_loss(tokenizer):
    """The evaluation path on a FULL tiny LLaMA (no sub-network): transformers' loss is the independent reference."""
    model = tiny_llama()
    blocks = torch.randint(0, 30522, (5, 12), generator=torch.Generator().manual_seed(0))
    from nas_tune.data import TokenizedSplit

    split = TokenizedSplit(blocks, torch.ones_like(blocks), None, blocks.clone())
    with torch.no_grad():
        reference = model(input_ids=blocks, labels=blocks).loss.item()
    metrics = language_model_metrics(model, split, batch_size=2)
    assert metrics["nll"] == pytest.approx(reference, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(reference), rel=1e-5)


def test_trivial_predictor_of_text_is_the_unigram_distribution():
    labels = np.array([[9, 1, 1, 2, 2], [9, 1, 1, 1, 3]])  # first column is never a target
    trivial = trivial_predictor(TASK, labels)
    counts = np.array([5, 2, 1])
    entropy = -(counts / 8 * np.log(counts / 8)).sum()
    assert trivial.metrics["perplexity"] == pytest.approx(math.exp(entropy))
    assert trivial.not_beaten_by({"perplexity": 2.0, "error": 0.5}) is None
    assert "unigram" in trivial.not_beaten_by({"perplexity": 50.0, "error": 0.98})


# --- training --------------------------------------------------------------------------------------------------


def test_token_distillation_is_the_mean_kl_over_predicted_positions():
    student, teacher = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False]])
    t = 2.0
    expected = (
        np.mean(
            [
                F.kl_div(F.log_softmax(student[i, j] / t, -1), F.softmax(teacher[i, j] / t, -1), reduction="sum").item()
                for i, j in mask.nonzero().tolist()
            ]
        )
        * t
        * t
    )
    assert distillation_loss(student, teacher, t, False, mask=mask).item() == pytest.approx(expected, rel=1e-5)
    assert distillation_loss(student, student, t, False, mask=mask).abs().item() < 1e-6


def test_lm_strategies_train_on_next_tokens_and_distil_token_distributions(tiny_decoder_dir):
    """sandwich_kd on a causal LM: the largest learns the shifted-token loss, the others also match its tokens."""
    loaded = load_model(str(tiny_decoder_dir), causal_lm=True)
    model, adapter = loaded.model.train(), loaded.adapter
    space = make_search_space("small", adapter.shape(model))
    blocks = torch.randint(1000, 1100, (4, 10), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": blocks, "attention_mask": torch.ones_like(blocks), "labels": blocks.clone()}
    strategy = make_strategy(
        "sandwich_kd", adapter, space, np.random.default_rng(0), StrategyOptions(num_random_subnets=0)
    )
    with torch.no_grad():
        reference = model(input_ids=blocks, labels=blocks).loss.item()  # transformers' own shifted LM loss
        assert strategy._label_loss(model(input_ids=blocks).logits, blocks).item() == pytest.approx(reference, rel=1e-5)
        teacher = model(input_ids=blocks).logits
        with adapter.sliced(model, strategy.smallest):
            student = model(input_ids=blocks).logits
        kd = strategy._distillation_loss(student, teacher, blocks).item()
        expected = (reference + strategy._label_loss(student, blocks).item() + kd) / 2
    model.zero_grad()
    assert strategy.step(model, batch, progress=0.5) == pytest.approx(expected, rel=1e-4)
    assert kd > 0 and model.cls.predictions.decoder.weight.grad is not None


def test_label_prior_head_init_never_runs_for_a_causal_lm(tiny_decoder_dir):
    loaded = load_model(str(tiny_decoder_dir), causal_lm=True)
    assert not loaded.head_is_new
    bias = loaded.model.cls.predictions.bias.detach().clone()
    assert (
        initialise_head_bias(loaded, torch.zeros(4, 10, dtype=torch.long)) is False
    )  # BertLMHeadModel has no .classifier
    assert torch.equal(loaded.model.cls.predictions.bias, bias)


def test_finetune_then_evaluate_a_sub_network_of_a_decoder_on_text(capsys, tmp_path, text_files, tiny_decoder_dir):
    files = [
        "--dataset",
        "text",
        "--train-file",
        str(text_files["train"]),
        "--validation-file",
        str(text_files["validation"]),
        "--test-file",
        str(text_files["test"]),
        "--max-seq-length",
        "16",
        "--max-validation-samples",
        "8",
        "--max-test-samples",
        "8",
    ]
    code, out, err = run(
        capsys,
        "finetune",
        "--model",
        str(tiny_decoder_dir),
        *files,
        "--output",
        str(tmp_path / "supernet"),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
    )
    assert code == 0, err
    assert "validation largest_perplexity" in out
    meta = json.loads((tmp_path / "supernet" / "supernet.json").read_text())
    assert meta["task"] == "text" and meta["final_metrics"]["largest_error"] == pytest.approx(
        1 - 1 / meta["final_metrics"]["largest_perplexity"]
    )
    code, out, err = run(
        capsys,
        "evaluate",
        "--model",
        str(tmp_path / "supernet"),
        *files,
        "--split",
        "test",
        "--config",
        "smallest",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (
        result["metrics"]["error"] == pytest.approx(1 - 1 / result["metrics"]["perplexity"])
        and result["layer_fraction"] < 0.5
    )
    assert type(load_model(str(tmp_path / "supernet")).model).__name__ == "BertLMHeadModel"  # reloads as a causal LM


@pytest.mark.skipif("llama" not in ADAPTERS, reason="the llama adapter is not registered yet")
def test_sandwich_kd_step_on_a_gqa_llama_sub_network():
    model = tiny_llama().train()
    adapter = adapter_for("llama")
    space = make_search_space("small", adapter.shape(model))
    blocks = torch.randint(0, 30522, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": blocks, "attention_mask": torch.ones_like(blocks), "labels": blocks.clone()}
    strategy = make_strategy("sandwich_kd", adapter, space, np.random.default_rng(0), StrategyOptions())
    loss = strategy.step(model, batch, progress=0.5)
    assert math.isfinite(loss) and loss > 0
