"""The org the gate and utilization benchmarks measure: the synthetic task in a fresh repo, built headless by the
real `plan_org`/`build_org`, with its agents and daemon stopped again (each benchmark drives the runner and the gate
itself). No tmux involved."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from autoorg.org import build_org, plan_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session

ROOT = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_synthetic_org(root: Path, tag: str, agents: list[str], *, budget: float, sigma: float | None = None,
                       grace: float | None = None) -> tuple[OrgPaths, str]:
    """An org `tag` of CPU agents on the synthetic task (budget seconds per run; optional noise sigma and grace)
    in root/repo; returns its paths and the program branch's base commit."""
    repo = root / "repo"
    repo.mkdir()
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
    org_file = root / f"{tag}.yaml"
    org_file.write_text(yaml.safe_dump({
        "tag": tag, "task": "synthetic", "defaults": {"backend": "command", "command": "sleep 86400"},
        "agents": [{"name": name, "slots": "cpu"} for name in agents]}))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    state = build_org(plan)
    open_session(plan.paths, state).stop()  # only the runner and the gate are measured: no agents, no daemon
    return plan.paths, plan.base
