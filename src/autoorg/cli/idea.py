"""`autoorg idea add | list | claim | done` — the org's idea queue."""

from __future__ import annotations

import argparse
import json

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.cli.msg import read_text_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("idea", help="the idea queue: add, list, claim, done")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="queue an idea")
    add.add_argument("title", nargs="+", help="one line saying what to try")
    add.add_argument("--body", help="details ('-' reads stdin)")
    add.set_defaults(func=run_add)
    ls = actions.add_parser("list", help="list ideas (default: the queue)")
    ls.add_argument("--state", choices=[*comms.IDEA_STATES, "all"], default="queue")
    ls.add_argument("--json", action="store_true", help="stable JSON for scripts")
    ls.set_defaults(func=run_list)
    claim = actions.add_parser("claim", help="claim a queued idea (exactly one claimer wins)")
    claim.add_argument("id")
    claim.set_defaults(func=run_claim)
    done = actions.add_parser("done", help="close an idea you claimed, with what came of it")
    done.add_argument("id")
    done.add_argument("note", nargs="*", help="what came of it (e.g. 'exp 12: no gain')")
    done.set_defaults(func=run_done)
    for action in (add, ls, claim, done):
        add_org_options(action)


def run_add(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    body = read_text_arg([args.body]) if args.body else ""
    idea_id = comms.add_idea(paths, comms.human_or_agent(), " ".join(args.title), body)
    print(f"idea {idea_id} queued")
    return 0


def run_list(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    states = comms.IDEA_STATES if args.state == "all" else (args.state,)
    ideas = [i for s in states for i in comms.list_ideas(paths, s)]
    if args.json:
        print(json.dumps([{"id": i.id, "title": i.title, "author": i.author, "state": i.state,
                           "claimed_by": i.claimed_by, "note": i.note, "body": i.body} for i in ideas], indent=2))
        return 0
    if not ideas:
        print(f"no ideas ({args.state})")
    for i in ideas:
        who = f" [{i.state} by {i.claimed_by}]" if i.claimed_by else ""
        note = f" — {i.note}" if i.note else ""
        print(f"{i.id:>4}  {i.title}  (from {i.author}){who}{note}")
    return 0


def run_claim(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    path = comms.claim_idea(paths, comms.human_or_agent(), args.id)
    print(f"idea {args.id} is yours: {path}")
    return 0


def run_done(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    comms.finish_idea(paths, comms.human_or_agent(), args.id, " ".join(args.note))
    print(f"idea {args.id} done")
    return 0
