"""`autoorg logs AGENT` — what its pane (or headless log) shows last, and the log of its latest run."""

from __future__ import annotations

import argparse

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.org import agent_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="an agent's recent pane output and its latest run's log")
    p.add_argument("agent")
    p.add_argument("-n", "--lines", type=int, default=200, help="lines of each (default: 200)")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output, run_log = agent_output(org_from_args(args), args.agent, max(1, args.lines))
    print(f"== {args.agent}: its pane" + ("" if output else " (not running)"))
    print("\n".join(output))
    if run_log is not None:
        lines = run_log.read_text(errors="replace").splitlines()[-max(1, args.lines):]
        print(f"== its latest run: {run_log}")
        print("\n".join(lines))
    return 0
