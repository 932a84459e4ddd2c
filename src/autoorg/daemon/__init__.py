"""The org's daemon: one per org, delivering messages, watching agents, running standups and the gate."""

from __future__ import annotations

from autoorg.daemon.core import Daemon

__all__ = ["Daemon"]
