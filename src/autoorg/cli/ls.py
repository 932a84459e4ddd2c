"""`autoorg ls` — the orgs of this repository and their state."""

from __future__ import annotations

import argparse
import sys

from autoorg import workspace
from autoorg.org import list_orgs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="the orgs in this repository and their state")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    repo = workspace.find_repo()
    orgs = list_orgs(repo)
    if not orgs:
        print(f"no org in {repo}; start one with `autoorg up`", file=sys.stderr)
    for tag, status in orgs:
        print(f"{tag}\t{status}")
    return 0
