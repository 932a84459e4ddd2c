"""`autoorg gate [--once]` — run the verification gate: baselines, screening, re-runs, promotion."""

from __future__ import annotations

import argparse
import sys
import time

from autoorg import gate
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="run the verification gate (the daemon runs it too; it is safe to run twice)")
    p.add_argument("--once", action="store_true", help="one unit of gate work, then exit")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between steps (default 2)")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    if args.once:
        if not gate.step(paths, log=print):
            print("gate: nothing to do (or another gate is working)", file=sys.stderr)
        return 0
    print(f"gate for org {paths.tag}: stepping every {args.interval:g}s (Ctrl-C to stop)", file=sys.stderr)
    while True:
        if not gate.step(paths, log=lambda line: print(line, flush=True)):
            time.sleep(args.interval)
