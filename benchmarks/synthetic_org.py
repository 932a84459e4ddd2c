"""The org the gate and utilization benchmarks measure: the synthetic task in a fresh repo, built headless by the
real `plan_org`/`build_org`, with its agents and daemon stopped again (each benchmark drives the runner and the gate
itself). No tmux involved."""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from autoorg import gate
from autoorg.org import build_org, plan_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session

ROOT = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def synthetic_repo(root: Path, *, budget: float, sigma: float | None = None, grace: float | None = None) -> Path:
    """A fresh repository root/repo holding the synthetic task (budget seconds per run; optional noise sigma and
    grace), committed on main."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@localhost")
    shutil.copytree(ROOT / "examples" / "synthetic", repo / "examples" / "synthetic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    task = repo / "examples/synthetic/task.yaml"
    text = re.sub(r"(?m)^budget: .*$", f"budget: {{cpu: {budget}, gpu: {budget}}}", task.read_text())
    if grace is not None:
        text = re.sub(r"(?m)^grace: .*$", f"grace: {grace:g}", text)
    if sigma is not None:
        text = re.sub(r"(?m)^noise: .*$", f"noise: {{sigma: {sigma}}}", text)
    task.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "synthetic")
    return repo


def make_synthetic_org(root: Path, tag: str, agents: list[str], *, budget: float, sigma: float | None = None,
                       grace: float | None = None, executor: dict[str, Any] | None = None) -> tuple[OrgPaths, str]:
    """An org `tag` of CPU agents on the synthetic task (budget seconds per run; optional noise sigma and grace;
    `executor`: the org file's executor:, e.g. a Ray cluster) in root/repo; returns its paths and the program
    branch's base commit."""
    return headless_org(synthetic_repo(root, budget=budget, sigma=sigma, grace=grace), root, tag, agents,
                        task="synthetic", extra={"executor": executor} if executor else {})


def headless_org(repo: Path, root: Path, tag: str, agents: list[str], *, task: str,
                 extra: dict[str, Any] | None = None) -> tuple[OrgPaths, str]:
    """An org `tag` of CPU agents on `task` in repo (its org file in root; `extra`: more org-file keys), built by
    the real build_org, its agents and daemon stopped again; returns its paths and the program branch's base."""
    org_file = root / f"{tag}.yaml"
    org_file.write_text(yaml.safe_dump({
        "tag": tag, "task": task, "defaults": {"backend": "command", "command": "sleep 86400"},
        "agents": [{"name": name, "slots": "cpu"} for name in agents], **(extra or {})}))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    state = build_org(plan)
    open_session(plan.paths, state).stop()  # only the runner and the gate are measured: no agents, no daemon
    return plan.paths, plan.base


# ---------------------------------------------------------------------------------------------------------------
# What benchmarks that plant changes share: the task's files, its hidden truth, a gate driven to a decision

TRAIN = "examples/synthetic/train.py"
LANDSCAPE = "examples/synthetic/landscape.py"
HEAD = {"LEARNING_RATE": 0.001, "WARMUP_FRAC": 0.3, "WEIGHT_DECAY": 0.0, "DEPTH": 4, "BATCH_SIZE": 64}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def load_landscape() -> Any:
    """This checkout's protected landscape.py (the task's hidden truth), as a module."""
    spec = importlib.util.spec_from_file_location("landscape", ROOT / LANDSCAPE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def win_lr(land: Any, drop: float) -> float:
    """The learning rate whose noise-free loss is `drop` below the head's (tokens do not depend on it)."""
    target = land.expected_loss(HEAD, 1e6) - drop
    lo, hi = 0.001, 0.006
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if land.expected_loss({**HEAD, "LEARNING_RATE": mid}, 1e6) > target else (lo, mid)
    return float(f"{math.sqrt(lo * hi):.6g}")


def step_until(paths: OrgPaths, done: Callable[[], bool], timeout: float = 1200.0) -> None:
    """Step the gate until `done()` (the benchmark drives the gate itself: no daemon); a busy machine (load 20 on
    2 cores) can take minutes over one round."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the gate did not settle in time")
        if not gate.step(paths, log=lambda _line: None):
            time.sleep(0.05)
