"""`nas-tune report`: Pareto table and plots of a search run folder."""

from __future__ import annotations

import argparse
import json

from nas_tune.report.summary import format_table, report_run


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="print the Pareto table of a search run and write its plots",
                                   description="Print the Pareto table of a run folder and write pareto.csv, pareto.png and hypervolume.png.")
    parser.add_argument("run_dir", help="run folder of `nas-tune search`")
    parser.add_argument("--json", action="store_true", help="print the Pareto set as JSON records")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = report_run(args.run_dir)
    if args.json:
        print(json.dumps({"hypervolume": report.hypervolume, "pareto": json.loads(report.front.to_json(orient="records"))}, indent=2))
        return 0
    print(format_table(report.front))
    print(f"{len(report.trials)} trials, {len(report.front)} on the Pareto front, hypervolume {report.hypervolume:.4f}")
    print("wrote " + ", ".join(str(p) for p in report.files))
    return 0
