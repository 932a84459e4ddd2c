"""`autoorg inbox [--all]` — show my messages (AUTOORG_AGENT, or `human` at the repo root) and mark them read."""

from __future__ import annotations

import argparse
import json

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inbox", help="show your unread messages and mark them read")
    p.add_argument("--all", action="store_true", help="also show messages already read")
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.add_argument("--peek", action="store_true", help="do not mark anything read")
    add_org_options(p)
    p.set_defaults(func=run)


def render(message: comms.Message) -> str:
    refs = "".join(f" {k}={v}" for k, v in (("re", message.re), ("exp", message.exp)) if v)
    seen = " (read)" if message.read else ""
    head = f"--- {message.id}{seen}\nfrom {message.sender} to {message.to} · {message.kind} · {message.ts}{refs}"
    return f"{head}\n{message.body}"


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    me = comms.human_or_agent()
    messages = comms.read_inbox(paths, me, include_read=args.all)
    if args.json:
        print(json.dumps([{"id": m.id, "from": m.sender, "to": m.to, "kind": m.kind, "ts": m.ts, "re": m.re,
                           "exp": m.exp, "read": m.read, "extra": m.extra, "body": m.body} for m in messages],
                         indent=2, default=str))
    elif not messages:
        print(f"no {'' if args.all else 'unread '}messages for {me}")
    else:
        print("\n\n".join(render(m) for m in messages))
    if not args.peek:
        comms.mark_read(paths, me, messages)
    return 0
