"""`autoorg down` — kill the session, remove worktrees, keep every branch that carries work."""

from __future__ import annotations

import argparse

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.org import teardown_org


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("down", help="stop an org: kill its session, remove worktrees, keep branches")
    add_org_options(p)
    p.add_argument("--purge", action="store_true",
                   help="also delete agent branches whose commits are all on the program branch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    result = teardown_org(paths, purge=args.purge)
    print(f"org {paths.tag} is down" + ("" if result.killed_session else " (its tmux session was already gone)"))
    if result.stopped_runs:
        print(f"  stopped {len(result.stopped_runs)} queued or running experiment(s): "
              f"{', '.join(result.stopped_runs)} (verdict: cancelled)")
    for agent, commit in result.saved.items():
        print(f"  {agent}: uncommitted work saved as {commit[:10]}")
    for branch, ahead in result.unmerged.items():
        print(f"  kept {branch}: {ahead} commit(s) not on org/{paths.tag}")
    for branch in result.deleted:
        print(f"  deleted {branch} (all its commits are on org/{paths.tag})")
    print(f"  ledger, runs and comms are kept in {paths.home}")
    return 0
