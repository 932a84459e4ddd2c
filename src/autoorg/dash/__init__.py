"""The Textual dashboard. `make_app` is what `autoorg dash` runs and what the tests drive."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from autoorg.dash.app import DashApp
from autoorg.paths import OrgPaths
from autoorg.state import read_state


def make_app(paths: OrgPaths, *, socket: str | None = None, refresh_s: float = 2.0,
             now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> DashApp:
    """The dashboard for one org; the tmux socket defaults to the one the org runs on; `now` is the clock the
    "for how long" column reads (tests fix it)."""
    if socket is None:
        socket = read_state(paths).socket
    return DashApp(paths, socket=socket, refresh_s=refresh_s, now=now)
