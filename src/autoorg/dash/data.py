"""What the dashboard shows, gathered in one pass: agents (state, slots, live loss), the program head, results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoorg.compute import gpu
from autoorg.errors import AutoorgError
from autoorg.experiments import ledger
from autoorg.org import org_status
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.state import read_state

RECENT = 12


@dataclass
class AgentRow:
    name: str
    role: str
    backend: str
    slots: str
    state: str
    detail: str
    branch: str
    head: str
    pane: str
    exp: str = ""  # the agent's latest experiment
    loss: str = ""  # its live train_loss while running, else the final metric
    step: str = ""
    last: str = ""  # verdict of its latest finished experiment


@dataclass
class Snapshot:
    tag: str
    running: bool
    program_branch: str
    program_head: str
    metric: str
    direction: str
    arrow: str  # ↓ or ↑, from TaskSpec.arrow
    best: str
    promotions: int
    experiments: int
    agents: list[AgentRow] = field(default_factory=list)
    recent: list[dict[str, str]] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def last_metric_line(path: Path, key: str) -> dict[str, Any] | None:
    """The last `@metric`-derived JSON line of a run that carries key (reads only the file's tail)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and key in data:
            return data
    return None


def _slots(slots: list[str], usage: dict[int, gpu.GpuUsage]) -> str:
    parts = []
    for s in slots:
        if s.isdigit() and int(s) in usage:
            parts.append(f"gpu{s} {usage[int(s)].util_pct:.0f}%")
        else:
            parts.append(s if s == "cpu" else f"gpu{s}")
    return ",".join(parts) or "-"


def take_snapshot(paths: OrgPaths) -> Snapshot:
    """Everything the dashboard draws, read from state.json, the ledger, status files, runs/ and the GPUs."""
    status = org_status(paths)
    state = read_state(paths)
    try:
        task = load_task(Path(state.task))
        metric, direction, arrow = task.metric, task.direction, task.arrow
    except AutoorgError:
        metric, direction, arrow = "metric", "minimize", "↓"
    rows = ledger.experiments(paths) if paths.ledger.exists() else []
    promotions = ledger.promotions(paths) if paths.ledger.exists() else []
    usage = gpu.usage() if any(s.isdigit() for a in status["agents"] for s in a["slots"]) else {}
    latest: dict[str, dict[str, Any]] = {}
    finished: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["kind"] != "exp":
            continue
        latest[r["agent"]] = r
        if r["verdict"] not in ledger.UNFINISHED:
            finished[r["agent"]] = r
    agents = []
    for a in status["agents"]:
        row = AgentRow(name=a["name"], role=a["role"] or "-", backend=a["backend"], slots=_slots(a["slots"], usage),
                       state=a["state"], detail=a.get("detail", ""), branch=a["branch"],
                       head=(a["head"] or "")[:8], pane=a["pane"])
        exp = latest.get(a["name"])
        if exp is not None:
            row.exp = exp["exp"]
            if exp["verdict"] == "running":
                live = last_metric_line(paths.runs / exp["exp"] / "metrics.jsonl", "train_loss")
                if live:
                    row.loss, row.step = _fmt(live.get("train_loss")), _fmt(live.get("step"))
            elif exp["metric"] is not None:
                row.loss = _fmt(exp["metric"])
        done = finished.get(a["name"])
        if done is not None:
            row.last = f"{done['exp']} {done['verdict']}"
        agents.append(row)
    best = ""
    if promotions:
        best = _fmt(promotions[-1]["metric"])
    else:
        baselines = [b for b in (ledger.baselines(paths) if paths.ledger.exists() else [])
                     if b["head"] == status["program_head"]]
        if baselines:
            best = f"{_fmt(baselines[-1]['mean'])} (baseline, n={baselines[-1]['n']})"
    recent = [{"exp": r["exp"], "kind": r["kind"], "agent": r["agent"], "metric": _fmt(r["metric"]),
               "delta": _fmt(r["delta"]), "verdict": r["verdict"], "description": r["description"]}
              for r in reversed(rows[-RECENT:])]
    return Snapshot(tag=status["tag"], running=status["running"], program_branch=status["program_branch"],
                    program_head=(status["program_head"] or "")[:10], metric=metric, direction=direction, arrow=arrow,
                    best=best,
                    promotions=len(promotions), experiments=sum(r["kind"] == "exp" for r in rows),
                    agents=agents, recent=recent)
