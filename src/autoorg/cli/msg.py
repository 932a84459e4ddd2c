"""`autoorg msg send TO [TEXT | -]` — send a message to an agent, a role, `all`, or `human`."""

from __future__ import annotations

import argparse
import sys

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.errors import CommsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("msg", help="send a message to an agent, a role, all, or human")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = actions.add_parser(
        "send", help="send a message (TEXT, or - to read it from stdin)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The offline researcher (backend: heuristic) acts on --kind directive messages, one per line:\n"
               "  explore NAME[, NAME…]   search only these knobs of the task\n"
               "  range NAME LOW HIGH     search NAME only within [LOW, HIGH]\n"
               "  reset                   back to every knob over its full range\n"
               "e.g. autoorg msg send alice --kind directive 'explore LEARNING_RATE'. It acknowledges other\n"
               "messages in its pane, and runs `autoorg idea add 'NAME = value'` ideas. LLM agents read every kind.")
    send.add_argument("to", help="agent name, role (e.g. chief, researcher), all, or human")
    send.add_argument("text", nargs="*", help="the message; '-' or nothing reads stdin")
    send.add_argument("--kind", default="note", choices=comms.KINDS, help="message kind (default: note)")
    send.add_argument("--re", help="id of the message this answers")
    send.add_argument("--exp", help="experiment id this is about")
    add_org_options(send)
    send.set_defaults(func=run_send)


def read_text_arg(words: list[str]) -> str:
    """The text of a command: its words joined, or stdin when they are `-` or absent (and stdin is not a tty)."""
    if words and words != ["-"]:
        return " ".join(words)
    if sys.stdin.isatty():
        raise CommsError("no text given: pass it as arguments, or '-' and pipe it on stdin")
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream with no bytes beneath it (a test's StringIO)
        return sys.stdin.read()
    try:  # the bytes, whatever the locale: comms files are UTF-8, and a C locale would smuggle in surrogates
        return raw.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommsError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start}); send text") from None


def run_send(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    body = read_text_arg(args.text)
    sent = comms.send_message(paths, sender=comms.human_or_agent(), to=args.to, kind=args.kind, body=body,
                              re=args.re, exp=args.exp)
    names = [p.parent.name for p in sent]
    print(f"sent to {', '.join(names)}")
    for name in names:
        why = comms.not_running_reason(paths, name)
        if why:
            print(f"autoorg: {name} is {why}: the message is kept in its inbox and delivered when it runs again",
                  file=sys.stderr)
    return 0
