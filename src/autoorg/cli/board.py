"""`autoorg board [post TEXT]` — show the org's board, or post one line on it."""

from __future__ import annotations

import argparse

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.cli.msg import read_text_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("board", help="show the org's board (current best, recent results, posts), or post on it")
    p.add_argument("action", nargs="?", choices=["show", "post"], default="show")
    p.add_argument("text", nargs="*", help="with post: one line; '-' reads stdin")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    if args.action == "post":
        print(comms.post_board(paths, comms.human_or_agent(), read_text_arg(args.text)))
        return 0
    text = comms.read_board(paths)
    print(text.rstrip() if text else f"the board of org {paths.tag} is empty")
    return 0
