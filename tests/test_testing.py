"""The fixtures come from `autoorg.testing.pytest_plugin`, registered once, and stand on real parts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autoorg.testing import git, pytest_plugin, retry_until


def test_the_plugin_is_registered_exactly_once(request: pytest.FixtureRequest) -> None:
    registered = [p for p in request.config.pluginmanager.get_plugins() if p is pytest_plugin]
    assert len(registered) == 1


def test_repo_is_a_real_git_repo_and_tmux_socket_a_real_server(repo: Path, tmux_socket: str) -> None:
    assert Path.cwd() == repo
    assert git(repo, "log", "--format=%s") == "initial"
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "probe"], check=True)
    retry_until(lambda: subprocess.run(["tmux", "-L", tmux_socket, "has-session", "-t", "probe"]).returncode == 0,
                message="the private tmux server")
