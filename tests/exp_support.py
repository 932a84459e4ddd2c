"""Helpers for the experiment tests: a repo holding the synthetic task, an org built the way `up` builds it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from autoorg import gate
from autoorg.experiments import ledger
from autoorg.org import build_org, plan_org
from autoorg.paths import OrgPaths
from tests.conftest import git, retry_until

SYNTHETIC = Path(__file__).resolve().parents[1] / "examples" / "synthetic"
TRAIN = "examples/synthetic/train.py"


def add_synthetic(repo: Path, *, budget: float = 0.3, sigma: float = 0.01, grace: float = 3) -> None:
    """Copy examples/synthetic into repo with a short budget, and commit it."""
    target = repo / "examples" / "synthetic"
    shutil.copytree(SYNTHETIC, target, ignore=shutil.ignore_patterns("__pycache__"))
    text = (target / "task.yaml").read_text()
    text = re.sub(r"(?m)^budget: .*$", f"budget: {{cpu: {budget}, gpu: {budget}}}", text)
    text = re.sub(r"(?m)^grace: .*$", f"grace: {grace}", text)
    text = re.sub(r"(?m)^noise: .*$", f"noise: {{sigma: {sigma}}}", text)
    (target / "task.yaml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "synthetic task")


def start_org(repo: Path, socket: str, tmp_path: Path, *, agents: int = 2, baseline: int = 4, repeats: int = 3,
              z: float | None = None, tag: str = "t", extra: dict[str, Any] | None = None) -> OrgPaths:
    """An org of CPU agents (backend command: an idle shell) on the synthetic task, built by build_org."""
    gate_cfg: dict[str, Any] = {"repeats": repeats}
    if z is not None:
        gate_cfg["z"] = z
    spec = {"tag": tag, "task": "synthetic", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": n, "slots": "cpu"} for n in ("alice", "bob", "carol", "dave", "eve", "frank",
                                                                "grace", "heidi")[:agents]],
            "processes": {"baseline": {"repeats": baseline}, "gate": gate_cfg}, **(extra or {})}
    org_file = tmp_path / f"{tag}.yaml"
    org_file.write_text(yaml.safe_dump(spec))
    plan = plan_org(str(org_file), repo=repo, socket=socket)
    build_org(plan)
    return plan.paths


def set_knobs(worktree: Path, **values: Any) -> None:
    path = worktree / TRAIN
    text = path.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", text)
        assert n == 1, name
    path.write_text(text)


def drive_gate(paths: OrgPaths, until: Any, timeout: float = 60.0, message: str = "the gate") -> Any:
    """Step the gate (as the daemon would) until `until()` is truthy."""
    def check() -> Any:
        gate.step(paths, log=lambda _line: None)
        return until()
    return retry_until(check, timeout=timeout, interval=0.2, message=message)


def verdict(paths: OrgPaths, exp: str) -> str:
    return str(ledger.get_experiment(paths, exp)["verdict"])


def settled(paths: OrgPaths, *exps: str) -> bool:
    """Every experiment has a final verdict (not queued, running, candidate, verifying or pending)."""
    open_ = (*ledger.UNFINISHED, "candidate", "verifying", "pending", "measured")
    return all(verdict(paths, e) not in open_ for e in exps)
