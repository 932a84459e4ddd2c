"""autoorg's pytest fixtures: every test in an isolated environment, a real repo, a private tmux server.

Registered by `pytest_plugins` in the suite's top conftest.py (not by a `pytest11` entry point, which a venv
installed before this module existed would not carry, and which would register it a second time beside it).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoorg.testing.helpers import make_repo


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's org, agent identity, org code or data cache."""
    for var in ("AUTOORG_HOME", "AUTOORG_AGENT", "AUTOORG_TAG", "AUTOORG_TMUX_SOCKET", "TMUX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUTOORG_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AUTOORG_USER_DIR", str(tmp_path / "user-org-code"))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repo with the tiny task (`make_repo`), as the current directory."""
    path = make_repo(tmp_path / "repo")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def tmux_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux server for this test, killed afterwards."""
    name = f"autoorg-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AUTOORG_TMUX_SOCKET", name)
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)
