"""`autoorg report [--tag T] [--json] [--out DIR]` — the org's report: Markdown and HTML pages with PNG plots
(progress, best so far vs compute, the lineage of promotions) in `<home>/report/`; `--json` prints the figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.report import figure_lines, figures_json, org_figures, write_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the org's report: figures, progress plots, promotions (Markdown, HTML, PNG)")
    p.add_argument("--json", action="store_true", help="print the figures as stable JSON (writes nothing)")
    p.add_argument("--out", help="folder to write the report to (default <org home>/report)")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    if args.json:
        print(json.dumps(figures_json(org_figures(paths)), indent=1))
        return 0
    report = write_report(paths, Path(args.out).resolve() if args.out else None)
    for label, value in figure_lines(report.figures):
        print(f"{label:40} {value}")
    print(f"report: {report.markdown}\n        {report.html}")
    return 0
