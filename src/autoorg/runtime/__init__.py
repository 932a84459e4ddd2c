"""Where agents run: a tmux pane each (`tmux`), the environment every agent process sees."""

from __future__ import annotations

import os

from autoorg.compute import gpu
from autoorg.paths import OrgPaths, bin_dir
from autoorg.spec import AgentSpec


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
