"""`nas-tune evaluate` / `export` / `finetune` end to end, and their one-sentence errors (exit code 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nas_tune.cli import main
from nas_tune.data import DataConfig, load_task_data, tokenize_split
from nas_tune.metrics.task import score
from nas_tune.models import load_model


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_json_on_a_fine_tuned_folder(capsys, tiny_model_dir, glue_dir):
    code, out, err = run(
        capsys,
        "evaluate",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--max-validation-samples",
        "40",
        "--max-seq-length",
        "32",
        "--config",
        '{"num_layers": 2, "num_heads": 2, "num_units": 10}',
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["num_examples"] == 40 and 0 <= result["metrics"]["error"] <= 1
    assert result["metrics"]["error"] == pytest.approx(1 - result["metrics"]["accuracy"])
    assert 0 < result["layer_fraction"] < 0.5 and result["config"]["num_layers"] == 2


def test_evaluate_largest_minilm_matches_a_plain_forward_pass(capsys, glue_dir):
    """Integration: the bundled MiniLM on real RTE; nas-tune's number is the plain model's number."""
    code, out, _ = run(
        capsys,
        "evaluate",
        "--dataset",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--max-validation-samples",
        "64",
        "--max-seq-length",
        "64",
        "--config",
        "largest",
        "--json",
    )
    assert code == 0
    reported = json.loads(out)
    loaded = load_model(None, 2, seed=0)
    data = load_task_data(DataConfig("rte", data_dir=str(glue_dir), max_validation_samples=64))
    split = tokenize_split(data.validation, loaded.tokenizer, data.task, 64)
    with torch.inference_mode():
        logits = loaded.model(
            input_ids=split.input_ids, attention_mask=split.attention_mask, token_type_ids=split.token_type_ids
        ).logits
    assert reported["metrics"]["accuracy"] == pytest.approx(
        score(data.task, logits.numpy(), split.labels.numpy())["accuracy"]
    )
    assert reported["layer_params"] == 10_646_784 and reported["layer_fraction"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--dataset", "rtx"], "Unknown dataset"),
        (["evaluate", "--dataset", "rte", "--data-dir", "/no/such/glue"], "does not exist"),
        (["evaluate", "--model", "./no-such-model", "--dataset", "rte"], "does not exist"),
        (
            [
                "evaluate",
                "--model",
                "MODEL",
                "--dataset",
                "rte",
                "--config",
                '{"num_layers": 9, "num_heads": 1, "num_units": 1}',
            ],
            "outside",
        ),
        (["evaluate", "--model", "MODEL", "--dataset", "rte", "--config", '{"layer_0": 1}'], "does not fit"),
        (["evaluate", "--model", "MODEL", "--dataset", "stsb"], "labels"),
        (["export", "--model", "MODEL", "--config", "smallest", "--output", "NONEMPTY"], "already holds files"),
        (["evaluate", "--model", "CORRUPT", "--dataset", "rte"], "corrupted"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(
    capsys, tmp_path, tiny_model_dir, glue_dir, monkeypatch, argv, message
):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    argv = [
        a.replace("MODEL", str(tiny_model_dir))
        .replace("NONEMPTY", str(tmp_path / "full"))
        .replace("CORRUPT", str(corrupt))
        for a in argv
    ]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


def test_export_writes_a_smaller_model(capsys, tmp_path, tiny_model_dir):
    code, out, err = run(
        capsys,
        "export",
        "--model",
        str(tiny_model_dir),
        "--search-space",
        "layer",
        "--config",
        '{"layer_0": 1, "layer_1": 0, "layer_2": 1}',
        "--output",
        str(tmp_path / "small"),
        "--json",
    )
    assert code == 0, err
    info = json.loads(out)
    assert not info["needs_trust_remote_code"] and info["layer_fraction"] == pytest.approx(2 / 3)
    from transformers import AutoModelForSequenceClassification

    small = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small")
    assert small.config.num_hidden_layers == 2
    assert json.loads((tmp_path / "small" / "nas_tune_export.json").read_text())["config"]["layer_1"] == 0
    assert np.isclose(info["total_params"], sum(p.numel() for p in small.parameters()))


def test_finetune_takes_the_new_flags_and_saves_a_run_file_that_repeats_it(capsys, tmp_path, tiny_model_dir, glue_dir):
    from nas_tune.cli import parse_args
    from nas_tune.cli.finetune import finetune_config
    from nas_tune.supernet import read_supernet_meta

    output = tmp_path / "ckpt"
    argv = [
        "finetune",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "32",
        "--max-validation-samples",
        "16",
        "--max-seq-length",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--weight-decay",
        "0",
        "--warmup-ratio",
        "0.5",
        "--label-weight",
        "0.5",
        "--max-grad-norm",
        "0.5",
        "--gradient-checkpointing",
    ]
    code, _, err = run(capsys, *argv, "--output", str(output))
    assert code == 0, err
    options = read_supernet_meta(output)["options"]
    assert (options["weight_decay"], options["warmup_ratio"], options["label_weight"], options["max_grad_norm"]) == (
        0,
        0.5,
        0.5,
        0.5,
    )
    assert options["gradient_checkpointing"] is True
    repeated = parse_args(["finetune", "--config", str(output / "run.yaml"), "--output", str(tmp_path / "again")])
    assert finetune_config(repeated) == finetune_config(parse_args([*argv, "--output", "x"]))
    assert (repeated.model, repeated.data_dir, repeated.max_seq_length) == (str(tiny_model_dir), str(glue_dir), 16)
