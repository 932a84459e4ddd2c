"""`autoorg bench SUITE.yaml` — which org code produces verified progress fastest: orgs x tasks x repeats, each
at the same compute, run headless, with a report (Markdown, HTML, PNG, JSON)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from autoorg.bench import Bench, default_out, load_results, load_suite
from autoorg.bench import report as bench_report
from autoorg.errors import SpecError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare org configurations: orgs x tasks x repeats at equal compute, "
                                     "with a report")
    p.add_argument("suite", type=Path, help="a suite YAML (see examples/bench/)")
    p.add_argument("--out", type=Path, help="the bench folder (default: .autoorg/bench/<suite> in the suite's repository)")
    p.add_argument("--repeats", type=int, help="override the suite's repeats")
    p.add_argument("--report-only", action="store_true", help="write the report of the cells done so far")
    p.add_argument("--json", action="store_true", help="print the report's JSON instead of the summary table")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


@contextlib.contextmanager
def stop_signals() -> Iterator[list[bool]]:
    """Ctrl-C, SIGTERM and SIGHUP (a `kill`, a closed terminal, a scheduler's stop) stop the bench: every running
    org is taken down and the same command resumes. Without this a kill took the bench down alone, and the orgs it
    had started (each in its own session) ran on to their budgets; SIGINT is set too because a bench started in
    the background of a script inherits it ignored (Python then never raises KeyboardInterrupt)."""
    stopped = [False]

    def stop(_sig: int, _frame: object) -> None:
        stopped[0] = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stopped
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.repeats is not None:
        if args.repeats < 1:
            raise SpecError(f"--repeats must be at least 1, not {args.repeats}")
        suite = replace(suite, repeats=args.repeats)
    out = (args.out or default_out(suite)).resolve()
    bench = Bench(suite, out, say=lambda line: print(line, file=sys.stderr, flush=True))
    complete = True
    if not args.report_only:
        cells = len(suite.cells())
        print(f"bench {suite.name}: {len(suite.orgs)} orgs x {len(suite.tasks)} task(s) x {suite.repeats} repeats "
              f"= {cells} cells, {suite.budget_s / 60:g} slot-minutes each, {suite.parallel} at a time on "
              f"{suite.cores} core(s) each; into {out}", file=sys.stderr, flush=True)
        with stop_signals() as stopped:
            complete = bench.run(interrupted=lambda: stopped[0])
        if not complete and not bench.results():
            return 130 if not bench.failed else 1
    results = load_results(out) if args.report_only else bench.results()
    if not results:
        print(f"autoorg bench: no finished cells in {out} yet", file=sys.stderr)
        return 2
    doc = bench_report.build(results, suite=suite.name, out=out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print((out / "report.md").read_text())
        print(f"report: {out / 'report.md'} (also report.html, report.json)", file=sys.stderr)
    if bench.failed:
        return 1
    return 0 if complete else 130
