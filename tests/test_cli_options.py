"""Options are generated from the settings dataclasses: help tells the defaults a command really uses, a
command line without options builds the dataclasses' defaults, and a --config file sets the same options."""

from __future__ import annotations

import argparse
import re

import pytest
import yaml

from nas_tune import cli
from nas_tune.cli.finetune import finetune_config
from nas_tune.cli.flags import from_args
from nas_tune.cli.options import data_config, latency_settings
from nas_tune.cli.pipeline_options import (
    DEFAULT,
    add_run_folder_options,
    parse_pipeline_args,
    pipeline_config,
    pipeline_parser,
)
from nas_tune.cli.run_config import RUN_FILE, read_run_config, save_run_config
from nas_tune.cli.search import search_settings
from nas_tune.pipeline import run_pipeline
from nas_tune.settings import BaselineSettings, DataConfig, FinetuneConfig, LatencySettings, SearchSettings


def launcher_parser() -> argparse.ArgumentParser:
    parser = pipeline_parser(None)
    add_run_folder_options(parser)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    return cli.parse_args([name, *REQUIRED[name]]).command_parser


REQUIRED = {
    "finetune": ["--output", "x"],
    "search": ["--checkpoint", "c", "--output", "x"],
    "baseline": ["rfp", "--output", "x"],
}


def shown_defaults(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> the value a flag's help gives as its default (descriptive defaults of unset options, such as 'all
    epochs' or 'layer_drop (default: 3)', left out)."""
    found = {}
    for action in parser._actions:
        match = re.search(r"\(default: ([^ )]+)\)$", " ".join((action.help or "").split()))
        if match and action.default is not None:
            found[action.dest] = match.group(1)
    return found


@pytest.mark.parametrize("name", ["launcher", *REQUIRED])
def test_help_shows_the_defaults_each_command_runs_with(name):
    parser = launcher_parser() if name == "launcher" else command_parser(name)
    args = parse_pipeline_args(parser, []) if name == "launcher" else cli.parse_args([name, *REQUIRED[name]])
    shown = shown_defaults(parser)
    assert len(shown) >= (30 if name == "launcher" else 8)
    for dest, text in shown.items():
        value = getattr(args, dest)
        assert text == str(value), (dest, text, value)
    if name == "launcher":
        assert (
            args.epochs == DEFAULT["epochs"] == 2 and shown["epochs"] == "2"
        )  # a launcher's own default, not FinetuneConfig's 5
    if name == "finetune":
        assert shown["epochs"] == "5" and shown["weight_decay"] == "0.01" and shown["warmup_ratio"] == "0.1"


def test_a_command_line_without_options_builds_the_settings_defaults():
    finetune = cli.parse_args(["finetune", "--output", "x"])
    assert finetune_config(finetune) == FinetuneConfig()
    assert data_config(finetune, finetune.seed) == DataConfig()
    search = cli.parse_args(["search", "--checkpoint", "c", "--output", "x"])
    assert search_settings(search) == SearchSettings() and latency_settings(search) == LatencySettings()
    assert from_args(BaselineSettings, cli.parse_args(["baseline", "rfp", "--output", "x"])) == BaselineSettings()


def test_flags_that_were_missing_reach_their_settings():
    config = launcher_config(
        [
            "--weight-decay",
            "0.2",
            "--warmup-ratio",
            "0.05",
            "--max-grad-norm",
            "2",
            "--label-weight",
            "0.5",
            "--eval-batch-size",
            "8",
            "--latency-repeats",
            "3",
            "--latency-batch-size",
            "2",
            "--trust-remote-code",
            "--text-columns",
            "a, b",
            "--objectives",
            "error,params,latency",
        ]
    )
    assert (config.finetune.weight_decay, config.finetune.warmup_ratio, config.finetune.max_grad_norm) == (
        0.2,
        0.05,
        2.0,
    )
    assert config.finetune.label_weight == 0.5 and config.finetune.eval_batch_size == config.eval_batch_size == 8
    assert config.latency == LatencySettings(batch_size=2, repeats=3) and config.trust_remote_code
    assert config.data.text_columns == ("a", "b") and config.search.objectives == ["error", "params", "latency"]
    budgets = cli.parse_args(["baseline", "rfp", "--budgets", "0.5,0.25", "--output", "x"])
    assert from_args(BaselineSettings, budgets).budgets == (0.25, 0.5)


def test_a_config_file_sets_options_the_command_line_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "quick: true\nepochs: 3\nbatch_size: 8\nobjectives: [error, params, latency]\nrepair: true\n"
        "max-validation-samples: 64\nmax-steps: null\n"
    )
    config = launcher_config(["--config", str(path), "--batch-size", "4"])
    assert (config.finetune.epochs, config.finetune.batch_size, config.search.objectives) == (
        3,
        4,
        ["error", "params", "latency"],
    )
    assert config.repair and config.data.max_validation_samples == 64  # the file wins over --quick's 128 ...
    assert (config.data.max_train_samples, config.max_seq_length, config.search.num_trials) == (
        256,
        64,
        16,
    )  # ... which still applies


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning-rate: 1\n", "unknown key 'learning-rate'"),
        ("output: runs/x\n", "unknown key 'output' (where the run goes is given on the command line)"),
        ("epochs: 0\n", "'epochs': must be a positive integer, got 0."),
        ("epochs: two\n", "'epochs': invalid literal for int()"),
        ("epochs: null\n", "'epochs' needs a value (its default is 5)"),
        ("strategy: best\n", "'strategy' must be one of standard, random"),
        ("resume-ok: true\nrepair: 1\n", "unknown key 'resume-ok'"),
        ("epochs: {a: 1}\n", "'epochs' must be a single value or a list, not a mapping"),
        ("- epochs\n", "must map option names to values"),
        ("epochs: [1\n", "is not valid YAML (line 2)"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_sentence_naming_the_key(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["finetune", "--config", str(path), "--output", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"nas-tune finetune: error: --config {path}: ") and message in err
    assert err.count("\n") == 1  # one sentence, no usage block


def test_a_switch_in_a_config_file_must_be_true_or_false(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("repair: 1\n")
    with pytest.raises(SystemExit):
        read_run_config(launcher_parser(), str(path))
    assert "'repair' is a switch: write true or false, not 1." in capsys.readouterr().err


@pytest.mark.parametrize("name", ["launcher", "finetune", "search", "baseline"])
def test_the_saved_config_repeats_the_run(tmp_path, name):
    argv = ["--dataset", "sst2", "--max-train-samples", "200", "--text-columns", "s", "--seed", "3"]
    if name == "launcher":
        parser, parse = (
            launcher_parser(),
            lambda extra: parse_pipeline_args(launcher_parser(), [*extra, "--output", "x"]),
        )
        argv += [
            "--quick",
            "--objectives",
            "error,params,latency",
            "--repair",
            "--latency-repeats",
            "4",
            "--epochs",
            "3",
        ]
    else:
        parser, parse = command_parser(name), lambda extra: cli.parse_args([name, *extra, *REQUIRED[name]])
        argv = {
            "finetune": [*argv, "--weight-decay", "0", "--reorder", "importance"],
            "search": ["--searcher", "nsga2", "--workers", "2"],
            "baseline": [*argv, "--budgets", "0.3,0.6", "--export"],
        }[name]
    original = parse(argv)
    path = save_run_config(parser, original, tmp_path)
    assert path == tmp_path / RUN_FILE and yaml.safe_load(path.read_text())  # plain YAML: flag names and values
    repeated = parse(["--config", str(path)])
    unrelated = {"run_config": None, "command_parser": None}  # the file named, and a parser object built anew
    assert vars(repeated) | unrelated == vars(original) | unrelated


def launcher_config(argv):
    return pipeline_config(parse_pipeline_args(launcher_parser(), argv))


@pytest.mark.parametrize(
    ("argv", "validation", "test"),
    [
        ([], 2048, None),  # no training budget: the usual caps
        (["--max-train-samples", "200"], 200, 200),  # a small budget keeps evaluation small
        (["--max-train-samples", "5000"], 2048, 5000),
        (
            ["--max-train-samples", "200", "--max-validation-samples", "500", "--max-test-samples", "300"],
            500,
            300,
        ),  # given caps win
        (["--quick"], 128, 128),
    ],
)
def test_small_training_budgets_cap_the_evaluation_splits(argv, validation, test):
    config = launcher_config(argv)
    assert (config.data.max_validation_samples, config.data.max_test_samples) == (validation, test)


def test_the_pipeline_says_what_it_evaluates_on_before_it_starts(tmp_path, capsys):
    class Stop(Exception):
        pass

    def finetune(*args, **kwargs):
        raise Stop  # the budget line must come before the first stage's work

    config = launcher_config(["--dataset", "sst2", "--max-train-samples", "200"])
    with pytest.raises(Stop):
        run_pipeline(config, tmp_path / "run", finetune=finetune)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "data: sst2, training on at most 200 training examples, every trial scored on at most 200 validation examples, "
        "picks tested on at most 200 test examples"
    )
