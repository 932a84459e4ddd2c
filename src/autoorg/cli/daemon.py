"""`autoorg daemon [--polling]` — the org's daemon (run by `up` in the session's `daemon` window)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType

from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.paths import tmux_socket

# A daemon told to stop that is still running this long after is ended at once: what it was doing is crash-safe
# (the ledger's transactions, flocks the kernel releases; the daemon is SIGKILL-tested), and a daemon that outlives
# its org keeps queuing runs.
STOP_GRACE_S = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="run the org's daemon: message delivery, pane watch, standups, gate")
    p.add_argument("--polling", action="store_true", help="poll comms/ instead of inotify (network filesystems)")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoorg.daemon import Daemon  # watchdog and the org machinery: only for this command

    daemon = Daemon(org_from_args(args), socket=tmux_socket(args.socket), polling=args.polling)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if not daemon.stop.is_set():
            backstop = threading.Timer(STOP_GRACE_S, os._exit, args=(1,))
            backstop.daemon = True  # a daemon that stops in time exits without waiting for it
            backstop.start()
        daemon.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    daemon.run()
    return 0
