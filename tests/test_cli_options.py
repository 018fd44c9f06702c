"""Option help tells the defaults a command really uses."""

from __future__ import annotations

from nas_tune.cli.pipeline_options import DEFAULT, parse_pipeline_args, pipeline_parser


def test_launcher_help_shows_the_pipeline_defaults_it_runs_with():
    parser = pipeline_parser(None)
    text = " ".join(parser.format_help().split())
    args = parse_pipeline_args(parser, [])
    assert args.epochs == DEFAULT["epochs"] == 2
    assert f"--epochs EPOCHS (default: {args.epochs})" in text and f"--batch-size BATCH_SIZE (default: {args.batch_size})" in text
