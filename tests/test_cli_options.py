"""Option help tells the defaults a command really uses."""

from __future__ import annotations

import pytest

from nas_tune.cli.pipeline_options import (
    DEFAULT,
    add_run_folder_options,
    parse_pipeline_args,
    pipeline_config,
    pipeline_parser,
)
from nas_tune.pipeline import run_pipeline


def test_launcher_help_shows_the_pipeline_defaults_it_runs_with():
    parser = pipeline_parser(None)
    text = " ".join(parser.format_help().split())
    args = parse_pipeline_args(parser, [])
    assert args.epochs == DEFAULT["epochs"] == 2
    assert f"--epochs EPOCHS (default: {args.epochs})" in text and f"--batch-size BATCH_SIZE (default: {args.batch_size})" in text


def launcher_config(argv):
    parser = pipeline_parser(None)
    add_run_folder_options(parser)
    return pipeline_config(parse_pipeline_args(parser, argv))


@pytest.mark.parametrize(("argv", "validation", "test"), [
    ([], 2048, None),  # no training budget: the usual caps
    (["--max-train-samples", "200"], 200, 200),  # a small budget keeps evaluation small
    (["--max-train-samples", "5000"], 2048, 5000),
    (["--max-train-samples", "200", "--max-validation-samples", "500", "--max-test-samples", "300"], 500, 300),  # given caps win
    (["--quick"], 128, 128),
])
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
    assert first == ("data: sst2, training on at most 200 training examples, every trial scored on at most 200 validation examples, "
                     "picks tested on at most 200 test examples")
