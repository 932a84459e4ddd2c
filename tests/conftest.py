"""Shared fixtures: a real git repo with a tiny task, a private tmux server per test, polling with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

TINY_TASK = """\
name: tiny
description: A tiny task for tests; train.py prints its knob X as the metric.
editable: [tiny/train.py]
protected: [tiny/task.yaml]
run: "{python} tiny/train.py --seed {seed}"
metric: {name: loss, direction: minimize}
budget: 10
grace: 5
knobs:
  - {name: X, type: float, low: 0.0, high: 2.0}
"""
TINY_TRAIN = """\
import json
X = 1.0
print("@metric " + json.dumps({"final": True, "loss": X, "steps": 1}), flush=True)
"""


def retry_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
                message: str = "condition") -> T:
    """Poll predicate until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    """A real git repo with one commit holding the tiny task."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    (path / "tiny").mkdir()
    (path / "tiny" / "task.yaml").write_text(TINY_TASK)
    (path / "tiny" / "train.py").write_text(TINY_TRAIN)
    (path / "README.md").write_text("research repo\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's org, agent identity or data cache."""
    for var in ("AUTOORG_HOME", "AUTOORG_AGENT", "AUTOORG_TAG", "AUTOORG_TMUX_SOCKET", "TMUX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AUTOORG_DATA", str(tmp_path / "data"))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
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


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `autoorg` entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
