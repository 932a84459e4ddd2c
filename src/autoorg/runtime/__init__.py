"""Where agents run: a tmux pane each (`tmux_session`) or a detached process each (`headless`), behind the
`Session` protocol; and the environment every agent process sees."""

from __future__ import annotations

import os

from autoorg.compute import gpu
from autoorg.paths import OrgPaths, bin_dir
from autoorg.runtime.headless import HeadlessSession
from autoorg.runtime.session import Launch, LineFate, Liveness, Session
from autoorg.runtime.tmux_session import TmuxSession
from autoorg.spec import AgentSpec
from autoorg.state import OrgState

__all__ = ["Launch", "LineFate", "Liveness", "Session", "open_session", "pane_environment"]


def open_session(paths: OrgPaths, state: OrgState) -> Session:
    """The session an org's state names (`runtime: tmux|headless`)."""
    if state.headless:
        return HeadlessSession(paths, state)
    return TmuxSession(state)


def pane_environment(paths: OrgPaths, agent: AgentSpec, socket: str | None) -> dict[str, str]:
    """What every agent's pane sees: who it is, where the org lives, its GPUs, and this autoorg on PATH."""
    env = {
        "AUTOORG_AGENT": agent.name,
        "AUTOORG_HOME": str(paths.home),
        "AUTOORG_TAG": paths.tag,
        "PATH": os.pathsep.join([str(bin_dir()), os.environ.get("PATH", "")]),
        **gpu.pane_env(agent.gpus),
    }
    if socket:
        env["AUTOORG_TMUX_SOCKET"] = socket
    env.update(agent.env)
    return env
