"""`autoorg diff AGENT` — what an agent's branch changed against the program branch."""

from __future__ import annotations

import argparse
import sys

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.org import agent_diff


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="an agent's branch against the program branch")
    p.add_argument("agent")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(agent_diff(org_from_args(args), args.agent))
    return 0
