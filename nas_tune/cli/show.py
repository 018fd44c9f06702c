"""`nas-tune show`: a run's exported picks (configs, sizes, metrics, latency, paths) without recomputing anything."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="print a run's exported picks: configs, sizes, metrics, latency and paths",
        description="Print the picks table of a pipeline run (or the Pareto table of a search run); writes nothing.",
    )
    parser.add_argument(
        "run_dir", metavar="RUN", help="run folder: the pipeline's (e.g. runs/rte-quick) or a search/baseline run"
    )
    parser.add_argument("--json", action="store_true", help="print summary.json's picks as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nas_tune.report.picks import picks_display
    from nas_tune.report.summary import format_table, load_report

    report = load_report(args.run_dir)
    summary = report.folder.summary or {}
    if args.json:
        print(json.dumps(summary.get("exported", []), indent=2))
        return 0
    print(
        f"{report.label}: task {report.metadata.get('task')}, {len(report.trials)} trials, {len(report.front)} on the Pareto front, "
        f"hypervolume {report.hypervolume:.4f}"
    )
    if not len(report.picks):
        print(format_table(report.front, report.metric))
        print(
            f"no exported picks in {report.folder.root}; export one with `nas-tune select {args.run_dir} --max-params 0.5 --output DIR`"
        )
        return 0
    print(picks_display(report.picks, report.metric).to_string(index=False))
    trivial = summary.get("trivial_predictor")
    if trivial:
        print(
            f"trivial predictor on the test split: {trivial['description']} (test {report.metric} {trivial[f'test_{report.metric}']:.4f})"
        )
    return 0
