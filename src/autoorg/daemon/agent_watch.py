"""Agent liveness: look at every agent through the org's Session, mark dead ones `crashed` and restart them with
backoff (`processes: {restart: {limit, backoff, exited}}`), or leave one that exited cleanly `stopped` (unless
`exited: true`: then it is restarted the same way). A tmux org's daemon whose session has been gone for
SESSION_GONE_S stops: its agents went with the session (`tmux kill-server`, a killed session), and a daemon left
behind would go on queuing the gate's runs on slots nobody watches."""

from __future__ import annotations

import time
from collections.abc import Callable

from autoorg import comms
from autoorg.errors import Say
from autoorg.paths import OrgPaths
from autoorg.runtime import Liveness, Session, pane_environment
from autoorg.spec import OrgSpec

STABLE_AFTER_S = 60.0  # an agent alive this long after a restart has its failure count reset
WATCH_EVERY_S = 1.0
# A tmux org's session missing at every look for this long (not one failed `list-panes`): the daemon stops.
SESSION_GONE_S = 10.0


class AgentWatch:
    """The daemon's liveness process: `tick` (every WATCH_EVERY_S) looks at every agent once, tells `seen` their
    process ids (for delivery) and handles dead ones."""

    every_s = WATCH_EVERY_S

    def __init__(self, paths: OrgPaths, spec: OrgSpec, session: Session, *, socket: str | None, headless: bool,
                 log: Say, seen: Callable[[dict[str, str]], None], gone: Callable[[], None]) -> None:
        self.paths = paths
        self.spec = spec
        self.session = session
        self.socket = socket
        self.headless = headless
        self.log = log
        self.seen = seen
        self.gone = gone
        self.gone_since: float | None = None  # monotonic time the tmux session was first found missing
        self.agents = spec.names
        self.restart_limit = spec.processes.restart.limit  # typed and validated when the org file was loaded
        self.restart_backoff = spec.processes.restart.backoff
        self.restart_exited = spec.processes.restart.exited
        self.restarts: dict[str, list[float]] = {}  # agent -> monotonic times of restarts since it was stable
        self.restart_due: dict[str, float] = {}
        self.dead_since: dict[str, float] = {}  # agent -> when first seen dead without an exit status

    def tick(self) -> None:
        live = self.session.liveness()
        now = time.monotonic()
        if live is None:
            self.seen({})
            if not self.headless:
                self.gone_since = self.gone_since if self.gone_since is not None else now
                if now - self.gone_since >= SESSION_GONE_S:
                    self.log(f"the org's tmux session has been gone for {now - self.gone_since:.0f}s: "
                             "its agents are gone with it; stopping the daemon")
                    self.gone()
            return
        self.gone_since = None
        found = {agent: live[agent] for agent in self.agents if agent in live}
        self.seen({agent: s.pid for agent, s in found.items()})
        for agent, state in found.items():
            if state.dead:
                self._dead(agent, state)
            elif self.restarts.get(agent) and now - self.restarts[agent][-1] > STABLE_AFTER_S:
                self.restarts.pop(agent)  # stable again: a later crash starts a fresh count

    def close(self) -> None:
        pass

    def _dead(self, agent: str, pane_state: Liveness) -> None:
        status = comms.read_status(self.paths, agent) or {}
        if status.get("state") in comms.HELD_STATES:
            return  # a person drives this pane; they decide
        code, signal = pane_state.exit_status, pane_state.exit_signal
        now = time.monotonic()
        if not code and not signal:
            # tmux may mark the pane dead before it has the exit status, and tmux 3.3 sometimes never reports
            # it for a respawned pane: wait a little, then call it a crash of unknown cause
            first = self.dead_since.setdefault(agent, now)
            if now - first < 3.0:
                return
        self.dead_since.pop(agent, None)
        if code:
            exited = f"exited with status {code}"
        else:
            unknown = "was killed (no exit status)" if self.headless else "exited (tmux reported no status)"
            exited = f"was killed by signal {signal}" if signal else unknown
        due = self.restart_due.get(agent)
        if due is not None:
            if now >= due:
                self.restart_due.pop(agent)
                self._restart(agent, exited)
            return
        if code == "0" and not self.restart_exited:
            if status.get("state") != "stopped":
                comms.write_status(self.paths, agent, "stopped", f"{exited}; not restarted")
                self.log(f"{agent}: {exited}; left stopped")
            return
        tries = len(self.restarts.get(agent, []))
        if tries >= self.restart_limit:
            detail = f"{exited}; gave up after {tries} restarts (see its pane)"
            if status.get("state") != "crashed" or status.get("detail") != detail:
                comms.write_status(self.paths, agent, "crashed", detail)
                self.log(f"{agent}: {detail}")
            return
        delay = self.restart_backoff * 2 ** tries
        comms.write_status(self.paths, agent, "crashed",
                           f"{exited}; restart {tries + 1}/{self.restart_limit} in {delay:.1f}s")
        self.log(f"{agent}: {exited}; restarting in {delay:.1f}s ({tries + 1}/{self.restart_limit})")
        self.restart_due[agent] = now + delay

    def _restart(self, agent: str, exited: str) -> None:
        env = pane_environment(self.paths, self.spec.agent(agent), self.socket)
        self.restarts.setdefault(agent, []).append(time.monotonic())
        n = len(self.restarts[agent])
        comms.write_status(self.paths, agent, "starting", f"restarted ({n}/{self.restart_limit}) after it {exited}")
        self.session.respawn(agent, env)
        self.log(f"{agent}: restarted ({n}/{self.restart_limit})")
