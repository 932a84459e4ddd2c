"""`autoorg standup [TEXT | -]` — write my standup note to `comms/standups/<date>/<agent>.md`."""

from __future__ import annotations

import argparse

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.cli.msg import read_text_arg
from autoorg.errors import CommsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("standup", help="write your standup note (what you tried, learned, will try next)")
    p.add_argument("text", nargs="*", help="the note; '-' or nothing reads stdin")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    me = comms.human_or_agent()
    if me == "human":
        raise CommsError("standup notes are written by agents (AUTOORG_AGENT is not set in this shell)")
    path = comms.write_standup(paths, me, read_text_arg(args.text))
    print(f"standup note written to {path}")
    return 0
