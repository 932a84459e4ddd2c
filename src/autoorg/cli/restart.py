"""`autoorg restart AGENT` — a fresh agent process in the same pane (or headless process slot) and worktree."""

from __future__ import annotations

import argparse

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.org import restart_agent


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restart", help="restart an agent: a fresh process in the same pane and worktree")
    p.add_argument("agent")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    restart_agent(org_from_args(args), args.agent)
    print(f"{args.agent} restarted")
    return 0
