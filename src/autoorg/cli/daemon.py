"""`autoorg daemon [--polling]` — the org's daemon (run by `up` in the session's `daemon` window)."""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.paths import tmux_socket


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="run the org's daemon: message delivery, pane watch, standups, gate")
    p.add_argument("--polling", action="store_true", help="poll comms/ instead of inotify (network filesystems)")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoorg.daemon import Daemon  # watchdog and the org machinery: only for this command

    daemon = Daemon(org_from_args(args), socket=tmux_socket(args.socket), polling=args.polling)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        daemon.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    daemon.run()
    return 0
