"""The seam between an org and where its agents run: the `Session` protocol, which tmux and headless implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

SERVICES = ("dash", "daemon")

# What became of a line typed earlier (by a daemon that may have died since): "taken"; "lost" (typed, but its
# Enter was not confirmed: retry later); "blocked" (the agent cannot be looked at now: dead, or a person scrolls
# its pane); "absent" (it was never typed).
LineFate = Literal["taken", "lost", "blocked", "absent"]


@dataclass
class Launch:
    """One agent process to start: its name, working directory, command and environment."""

    name: str
    cwd: str
    command: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Liveness:
    """One agent or service as its runtime sees it now."""

    dead: bool
    exit_status: str = ""  # the exit code, when known
    exit_signal: str = ""  # the signal that killed it, when known
    pid: str = ""  # its process: a new one after a respawn


class Session(Protocol):
    """Where an org's agents and services (daemon, dashboard) run. Built from, and recorded in, the org's state."""

    def start(self, agents: list[Launch], *, cwd: str, env: dict[str, str], daemon_command: str,
              dash_command: str) -> None:
        """Start every agent and the services; record where they run in the state it was built from."""

    def running(self) -> bool:
        """Does the session exist (some of it may have died)?"""

    def liveness(self) -> dict[str, Liveness] | None:
        """Every agent and service by name; None when the session is gone."""

    def send_line(self, agent: str, text: str) -> bool:
        """Give an agent one line of input; whether it was taken."""

    def settle_line(self, agent: str, text: str) -> LineFate:
        """What became of a line sent earlier (see LineFate); presses a lost Enter again where that applies."""

    def respawn(self, name: str, env: dict[str, str]) -> None:
        """Start a dead agent or service again, as it was first started, with env."""

    def recent_output(self, agent: str, lines: int = 200) -> list[str]:
        """The last lines an agent printed."""

    def show_message(self, text: str) -> None:
        """Tell the people watching the org (a tmux message in its session; nothing where no one watches)."""

    def stop(self) -> bool:
        """Stop every agent and service; whether anything was running."""
