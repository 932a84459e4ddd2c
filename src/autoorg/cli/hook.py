"""`autoorg hook status STATE [--detail TEXT]` — what agent hooks call to write `comms/status/<agent>.json`.

At the end of a turn (idle, stopped) it also reads the agent's token use from its CLI's own records into the
ledger (usage.py).

Agent CLIs treat some hook exit codes as instructions (Claude Code feeds exit-2 stderr back to the model), so a
failing hook exits 1 with its one line on stderr instead of 2.
"""

from __future__ import annotations

import argparse
import sys

from autoorg import comms
from autoorg.agents import usage
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.errors import AutoorgError, CommsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hook", help="for agent hooks: report this agent's state")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="write this agent's status file")
    status.add_argument("state", help="one of " + ", ".join(comms.STATES))
    status.add_argument("--detail", default="", help="one line shown in `autoorg status`")
    status.add_argument("--agent", help="which agent (default: AUTOORG_AGENT)")
    add_org_options(status)
    status.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    try:
        paths = org_from_args(args)
        agent = args.agent or comms.human_or_agent()
        if agent == "human":
            raise CommsError("hook status needs an agent: AUTOORG_AGENT is not set and --agent was not given")
        comms.report_status(paths, comms.known_agent(paths, agent), args.state, " ".join(args.detail.split()))
        if args.state in ("idle", "stopped"):  # a turn ended: its tokens are in the CLI's records now
            usage.refresh(paths, agent)
    except AutoorgError as exc:
        sys.stderr.write(f"autoorg: {exc}\n")
        return 1
    return 0
