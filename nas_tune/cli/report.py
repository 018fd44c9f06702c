"""`nas-tune report`: Pareto table, plots and report.html of one run, or of several overlaid."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas_tune.report.summary import RunReport


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print the Pareto table of a run and write its plots and report.html",
        description="Regenerate a run's pareto.csv (test metrics included), pareto.png (picks marked), "
        "hypervolume.png and report.html. Several runs of one task (e.g. a search and "
        "baseline runs) are also overlaid in one combined report.html.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder: the pipeline's (e.g. runs/rte-quick) or its search/ folder, or the --output of "
        "`nas-tune search` / `nas-tune baseline`",
    )
    parser.add_argument(
        "--output", default="report.html", help="the combined report of several runs (default: report.html here)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the hypervolume and Pareto set as JSON (a list for several runs)"
    )
    parser.set_defaults(run=run)


def _as_json(report: RunReport) -> dict:
    return {
        "run": str(report.folder.root),
        "hypervolume": report.hypervolume,
        "pareto": json.loads(report.front.to_json(orient="records")),
    }


def run(args: argparse.Namespace) -> int:
    from nas_tune.report.html import check_comparable, write_html_report
    from nas_tune.report.summary import format_table, load_report, write_report

    reports = [load_report(path) for path in args.runs]  # every folder is checked before anything is written
    check_comparable(reports)
    for report in reports:
        write_report(report)
    combined = write_html_report(reports, args.output) if len(reports) > 1 else None
    if args.json:
        records = [_as_json(report) for report in reports]
        print(json.dumps(records if combined else records[0], indent=2))
        return 0
    for report in reports:
        print(
            f"{report.label}: {len(report.trials)} trials, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}"
        )
        print(format_table(report.front, report.metric))
        print("wrote " + ", ".join(str(path) for path in report.files) + "\n")
    if combined:
        print(f"wrote {combined} ({len(reports)} runs overlaid)")
    return 0
