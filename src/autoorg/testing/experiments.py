"""Orgs on the synthetic task for the experiment tests, built the way `up` builds them, and the gate stepped by hand."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from autoorg import gate
from autoorg.experiments import ledger
from autoorg.gate.verify import gate_lock
from autoorg.org import build_org, plan_org
from autoorg.paths import OrgPaths
from autoorg.testing.helpers import retry_until

TRAIN = "examples/synthetic/train.py"  # the synthetic task's editable file, inside a research repo


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
    """Rewrite `NAME = value` lines of the synthetic train.py in worktree."""
    path = worktree / TRAIN
    text = path.read_text()
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value!r}", text)
        if n != 1:
            raise AssertionError(f"{TRAIN} has no single `{name} = ...` line")
    path.write_text(text)


def drive_gate(paths: OrgPaths, until: Any, timeout: float = 60.0, message: str = "the gate") -> Any:
    """Step the gate (as the daemon would) until `until()` is truthy, then wait for any gate step still in flight
    in another process (a finished run's hand-over may be the one promoting: its messages and board come after
    the verdict), so what the test reads next is whole."""
    def check() -> Any:
        gate.step(paths, log=lambda _line: None)
        return until()
    result = retry_until(check, timeout=timeout, interval=0.2, message=message)
    with gate_lock(paths, wait_s=timeout) as held:
        if not held:
            raise AssertionError(f"the gate's lock stayed busy for {timeout:.0f}s after {message}")
    return result


def verdict(paths: OrgPaths, exp: str) -> str:
    """The ledger's verdict on one experiment."""
    return str(ledger.get_experiment(paths, exp)["verdict"])


def settled(paths: OrgPaths, *exps: str) -> bool:
    """Every experiment has a final verdict (not queued, running, candidate, verifying or pending)."""
    open_ = (*ledger.UNFINISHED, "candidate", "verifying", "pending", "measured")
    return all(verdict(paths, e) not in open_ for e in exps)
