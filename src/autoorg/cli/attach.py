"""`autoorg attach [AGENT]` — jump to the org's session, or straight to one agent's pane."""

from __future__ import annotations

import argparse

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args, socket_from_args
from autoorg.errors import StateError
from autoorg.runtime import tmux
from autoorg.runtime.headless import log_path
from autoorg.state import read_state


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attach", help="attach to the org's tmux session, or to one agent's pane")
    p.add_argument("agent", nargs="?", help="agent whose pane to focus")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    state = read_state(paths)
    if state.headless:
        if args.agent:
            state.agent(args.agent)  # an unknown agent is reported as such
        raise StateError(f"org '{paths.tag}' runs headless: there is no tmux session to attach to; its agents' "
                         f"output is in {log_path(paths, args.agent or '<agent>')}")
    socket = socket_from_args(args, state)
    if not tmux.has_session(socket, state.session):
        raise StateError(f"org '{paths.tag}' is not running (no tmux session {state.session})")
    target = state.session
    if args.agent:
        target = state.agent(args.agent).pane
        tmux.select_pane(socket, target)
    if not tmux.attach(socket, target):
        raise StateError(f"cannot switch to {target}: no tmux client here; {tmux.attach_hint(socket, target)}")
    return 0
