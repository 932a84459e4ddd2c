"""Real parts for tests: a git repo holding a tiny task, the `autoorg` CLI in a subprocess, polling with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
                message: str = "condition", show: Callable[[], object] | None = None) -> T:
    """Poll predicate until it returns something truthy, or fail after timeout seconds (saying what `show`
    returns then, when given: the screen or the rows the wait was for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; saw:\n{show()}" if show is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{seen}")
        time.sleep(interval)


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd and return its stdout, stripped; a failing call raises."""
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


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `autoorg` entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
