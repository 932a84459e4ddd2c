"""`autoorg dash` — the control room: each agent's state, loss, last result, slot, branch and spend; the program
head's metric, the gate's queue, promotions and the board; keys to take over, release, pause, message, see an
agent's diff and log, and jump to its pane."""

from __future__ import annotations

import argparse
import shlex

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args, socket_from_args
from autoorg.paths import autoorg_command
from autoorg.runtime import tmux
from autoorg.state import read_state


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dash", help="live dashboard of the org: t take, r release, p pause, m message, d diff, l log, "
                                        "o report, Enter pane, ? help")
    add_org_options(p)
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--popup", action="store_true",
                   help="open the dashboard as a tmux popup over the current pane (`up` binds it to prefix + D)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoorg.dash import make_app  # Textual loads only for this command

    paths = org_from_args(args)
    socket = socket_from_args(args, read_state(paths))
    if args.popup:
        # the popup's shell starts wherever its pane is: the org goes with it by AUTOORG_HOME, not the cwd
        tmux.popup(socket, f"env AUTOORG_HOME={shlex.quote(str(paths.home))} "
                           + autoorg_command("dash", "--refresh", str(args.refresh)))
        return 0
    make_app(paths, socket=socket, refresh_s=args.refresh).run()
    return 0
