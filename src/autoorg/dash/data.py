"""What the dashboard shows, gathered in one pass off the UI thread: each agent (state and for how long, slot and
its load, live loss, last result, spend), the program head's metric over time, the gate's queue, promotions, the
board. What does not change between refreshes (the org spec, whether a branch is behind, the board) is kept in a
`SnapshotCache` keyed on what would change it, so a refresh of a quiet org is one git call, one liveness look, a
few SQLite reads and the status files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoorg import comms, workspace
from autoorg.clock import parse_iso
from autoorg.compute import gpu
from autoorg.compute.cpu_load import CpuTimes, busy_percent, cpu_times
from autoorg.daemon.notify import Notice, notices_path, read_notices
from autoorg.errors import AutoorgError
from autoorg.experiments import ledger
from autoorg.org import org_status
from autoorg.paths import OrgPaths
from autoorg.runtime.headless import log_path
from autoorg.spec import OrgSpec, TaskSpec, load_org, load_task
from autoorg.state import read_state

RECENT = 12  # results, promotions and posts kept
NOTICES = 5  # notifications kept
CURVE = 24  # points of a live loss curve
LEDGER_REREAD_S = 30
TAIL_BYTES = 8192  # of a run's metrics.jsonl: enough for CURVE lines
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class AgentRow:
    name: str
    role: str
    backend: str  # backend/model
    slots: str  # `cpu3 45%`, `gpu0 87% 12.3G`, or the agent's slots when nothing runs
    state: str
    since: str  # how long in that state: `42s`, `3m`, `2h`
    detail: str
    branch: str
    behind: bool  # the program head has moved past the commit the branch started from
    head: str
    pane: str
    log: str  # where a headless agent's output goes
    exp: str = ""  # the agent's latest experiment while queued or running
    loss: str = ""
    curve: str = ""  # sparkline of the running experiment's train_loss
    step: str = ""
    last: str = ""  # latest finished experiment: `e0003 +0.1000 discarded`
    last_verdict: str = ""
    tokens: str = ""
    cost: str = ""
    latest_exp: str = ""  # the latest experiment whatever its verdict (its log is what `l` shows)


@dataclass
class ChartPoint:
    metric: float
    kind: str  # exp | baseline | verify
    verdict: str
    head: float | None  # the program head's verified metric when this run finished


@dataclass
class GateItem:
    exp: str
    agent: str
    landed: int
    needed: int
    mean: str
    status: str
    pairs: list[str] = field(default_factory=list)  # each same-seed re-run pair as it lands


@dataclass
class Snapshot:
    tag: str
    runtime: str
    running: bool
    daemon_alive: bool
    program_branch: str
    program_head: str
    metric: str
    direction: str
    arrow: str  # ↓ or ↑, from TaskSpec.arrow
    best: str
    promotions: int
    experiments: int
    compute_h: float  # run time of every finished run, in hours
    cost: str  # model spend of the whole org
    tokens: str
    agents: list[AgentRow] = field(default_factory=list)
    recent: list[dict[str, str]] = field(default_factory=list)
    chart: list[ChartPoint] = field(default_factory=list)
    gate: list[GateItem] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)  # recent promotions, oldest first
    posts: list[comms.BoardPost] = field(default_factory=list)
    board_error: str = ""
    notices: list[Notice] = field(default_factory=list)  # the daemon's latest notifications, oldest first
    # the org's stop rules that fired or are past half-way (`plateau 7/10 -> pause`), from `org_status`
    stop_rules: list[str] = field(default_factory=list)


# experiments, promotions, baselines, running verifications
LedgerRows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class SnapshotCache:
    """What the dashboard keeps between refreshes, each entry keyed on what would change it."""
    spec: tuple[float, OrgSpec | None] = (0.0, None)
    behind: dict[tuple[str, str], bool] = field(default_factory=dict)
    board: tuple[tuple[int, int], list[comms.BoardPost]] = ((0, 0), [])
    cpu: CpuTimes = field(default_factory=dict)
    task: tuple[float, TaskSpec | None] = (0.0, None)
    ledger: tuple[tuple[int, ...], LedgerRows] = ((), ([], [], [], []))
    notices: tuple[tuple[int, int], list[Notice]] = ((0, 0), [])


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def age(since: str | None, now: datetime) -> str:
    """`<1m`, `3m`, `2h`, `5d` since an ISO stamp ('' without one). No seconds: a cell that changed on every
    refresh would make the agents table redraw every row of a quiet org."""
    if not since:
        return ""
    try:
        seconds = max(0, int((now - parse_iso(since)).total_seconds()))
    except ValueError:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return "<1m"


def human_count(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in values)


def metric_lines(path: Path, key: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` JSON lines of a run's metrics.jsonl that carry key, oldest first (reads only the file's
    tail, and parses only the lines it keeps)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for line in reversed(tail):
        if len(out) == limit:
            break
        if f'"{key}"' not in line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get(key), int | float):
            out.append(data)
    return out[::-1]


def _org_spec(paths: OrgPaths, cache: SnapshotCache) -> OrgSpec | None:
    try:
        mtime = paths.org_yaml.stat().st_mtime
    except OSError:
        return None
    if cache.spec[0] != mtime:
        try:
            cache.spec = (mtime, load_org(str(paths.org_yaml)))
        except AutoorgError:
            cache.spec = (mtime, None)
    return cache.spec[1]


def _task(path: Path, cache: SnapshotCache) -> TaskSpec | None:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    if cache.task[0] != mtime:
        try:
            cache.task = (mtime, load_task(path))
        except AutoorgError:
            cache.task = (mtime, None)
    return cache.task[1]


def _ledger_rows(paths: OrgPaths, cache: SnapshotCache) -> LedgerRows:
    """The ledger's rows the dashboard draws, read again only when the ledger changed."""
    stamp = ledger.change_stamp(paths)
    if not stamp:
        return [], [], [], []
    stamp += (int(time.monotonic() // LEDGER_REREAD_S),)  # and now and then regardless, should a stamp ever lie
    if cache.ledger[0] != stamp:
        cache.ledger = (stamp, (ledger.experiments(paths), ledger.promotions(paths), ledger.baselines(paths),
                                ledger.verifications(paths, status="running")))
    return cache.ledger[1]


def _is_behind(repo: Path, program_head: str | None, head: str | None, cache: SnapshotCache) -> bool:
    """The program head is not in the branch's history: the agent works on an old head."""
    if not program_head or not head or program_head == head:
        return False
    key = (program_head, head)
    if key not in cache.behind:
        cache.behind[key] = not workspace.is_ancestor(repo, program_head, head)
    return cache.behind[key]


def _board(paths: OrgPaths, cache: SnapshotCache) -> tuple[list[comms.BoardPost], str]:
    try:
        st = comms.board_path(paths).stat()
    except OSError:
        return [], ""
    key = (st.st_mtime_ns, st.st_size)
    if cache.board[0] != key:
        try:
            cache.board = (key, comms.board_posts(comms.read_board(paths), RECENT))
        except AutoorgError as exc:
            return [], str(exc)
    return cache.board[1], ""


def _notices(paths: OrgPaths, cache: SnapshotCache) -> list[Notice]:
    """The daemon's latest notifications, read again only when its log grew."""
    try:
        st = notices_path(paths).stat()
    except OSError:
        return []
    key = (st.st_mtime_ns, st.st_size)
    if cache.notices[0] != key:
        cache.notices = (key, read_notices(paths, NOTICES))
    return cache.notices[1]


def _slot_text(slots: list[str], running: dict[str, Any] | None, gpus: dict[int, gpu.GpuUsage],
               cores: dict[int, float]) -> str:
    """The agent's slot and its load: the running experiment's slot, else what the agent may use. A run on a Ray
    node shows its slot and where it is (`gpu0@10.0.0.5:3f2a9c`)."""
    if running and "@" in str(running.get("slot") or ""):
        return str(running["slot"])
    if running and running.get("slot", "") and str(running["slot"]).startswith("cpu"):
        name = str(running["slot"])
        core = int(name[3:]) if name[3:].isdigit() else -1
        return f"{name} {cores[core]:.0f}%" if core in cores else name
    parts = []
    for s in slots:
        if s.isdigit():
            use = gpus.get(int(s))
            parts.append(f"gpu{s} {use.util_pct:.0f}% {use.memory_used_mb / 1024:.1f}G" if use else f"gpu{s}")
        else:
            parts.append(s)
    return ",".join(parts) or "-"


def _chart(rows: list[dict[str, Any]], promotions: list[dict[str, Any]],
           baselines: list[dict[str, Any]]) -> list[ChartPoint]:
    """Every measured run as a point, in the order it finished, with the verified head metric at that moment."""
    measured = [r for r in rows if r["metric"] is not None and r["verdict"] not in ledger.UNFINISHED]
    measured.sort(key=lambda r: (r["finished"] or r["queued"], r["id"]))
    start = promotions[0]["head_mean"] if promotions else (baselines[0]["mean"] if baselines else None)
    points, step, head = [], 0, start
    for r in measured:
        stamp = r["finished"] or r["queued"]
        while step < len(promotions) and promotions[step]["ts"] <= stamp:
            head = promotions[step]["metric"]
            step += 1
        points.append(ChartPoint(metric=r["metric"], kind=r["kind"], verdict=r["verdict"], head=head))
    if step < len(promotions) and points:  # promotions after the last run: the line ends at the new head
        points[-1].head = promotions[-1]["metric"]
    return points


def _arm(run: dict[str, Any] | None) -> str:
    """One arm of a re-run pair: its value once measured, else its verdict."""
    if run is None:
        return "-"
    return _fmt(run["metric"]) if run["verdict"] == "ok" and run["metric"] is not None else run["verdict"]


def _pairs(v: dict[str, Any], runs: list[dict[str, Any]], task: TaskSpec | None) -> list[str]:
    """`seed 7: 0.7500 vs 0.8000 +0.0500` (candidate vs head, then the gain) per same-seed pair (a head run and a candidate run), in the
    order they were queued; the difference is the candidate's gain, positive = better, once both landed."""
    seeds: dict[int, dict[str, dict[str, Any]]] = {}
    for r in runs:
        seeds.setdefault(r["seed"], {})["head" if r["commit_sha"] == v["head"] else "cand"] = r
    lines = []
    for seed, arms in seeds.items():
        head, cand = arms.get("head"), arms.get("cand")
        line = f"seed {seed}: {_arm(cand)} vs {_arm(head)}"
        if head and cand and head["verdict"] == cand["verdict"] == "ok" and task is not None \
                and head["metric"] is not None and cand["metric"] is not None:
            line += f" {signed(task.improvement(cand['metric'], head['metric']))}"
        lines.append(line)
    return lines


def _gate(verifying: list[dict[str, Any]], by_exp: dict[str, dict[str, Any]],
          task: TaskSpec | None) -> list[GateItem]:
    items = []
    for v in verifying:
        runs = [by_exp[e] for e in v["runs"] if e in by_exp]
        landed = [r for r in runs if r["verdict"] not in ledger.UNFINISHED]
        values = [r["metric"] for r in landed if r["metric"] is not None and r["commit_sha"] != v["head"]]
        mean = _fmt(sum(values) / len(values)) if values else ""
        cand = by_exp.get(v["exp"], {})
        items.append(GateItem(exp=v["exp"], agent=cand.get("agent", ""), landed=len(landed), needed=len(v["runs"]),
                              mean=mean, status="verifying", pairs=_pairs(v, runs, task)))
    for r in by_exp.values():  # screened as better, waiting for the gate to pick them up
        if r["kind"] == "exp" and r["verdict"] == "candidate":
            items.append(GateItem(exp=r["exp"], agent=r["agent"], landed=0, needed=0, mean=_fmt(r["metric"]),
                                  status="candidate"))
    return items


def take_snapshot(paths: OrgPaths, cache: SnapshotCache | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Snapshot:
    """Everything the dashboard draws, read from state.json, the ledger, status files, runs/, the board and the
    machine's GPUs and cores."""
    cache = cache or SnapshotCache()
    spec = _org_spec(paths, cache)
    status = org_status(paths, spec=spec)
    state = read_state(paths)
    moment = now()
    task = _task(Path(state.task), cache)
    metric, direction, arrow = (task.metric, task.direction, task.arrow) if task else ("metric", "minimize", "↓")
    rows, promotions, baselines, verifying = _ledger_rows(paths, cache)
    models = {a.name: a.model for a in spec.agents} if spec else {}
    gpus = gpu.usage() if any(s.isdigit() for a in status["agents"] for s in a["slots"]) else {}
    before, cache.cpu = cache.cpu, cpu_times()
    cores = busy_percent(before, cache.cpu)
    by_exp = {r["exp"]: r for r in rows}
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
        name = a["name"]
        exp = latest.get(name)
        current = exp if exp is not None and exp["verdict"] in ledger.UNFINISHED else None
        usage = a.get("usage") or {}
        model = usage.get("model") or models.get(name) or ""
        row = AgentRow(
            name=name, role=a["role"] or "-", backend=f"{a['backend']}/{model}" if model else a["backend"],
            slots=_slot_text(a["slots"], current if current and current["verdict"] == "running" else None, gpus,
                             cores),
            state=a["state"], since=age(a["since"], moment),
            detail=a.get("detail", ""), branch=a["branch"],
            behind=_is_behind(Path(state.repo), status["program_head"], a["head"], cache),
            head=(a["head"] or "")[:8], pane=a["pane"],
            log=str(log_path(paths, name)) if state.runtime == "headless" else "")
        if exp is not None:
            row.latest_exp = exp["exp"]
        if current is not None:
            row.exp = current["exp"]
            if current["verdict"] == "running":
                live = metric_lines(paths.runs / current["exp"] / "metrics.jsonl", "train_loss", CURVE)
                if live:
                    row.loss, row.step = _fmt(float(live[-1]["train_loss"])), _fmt(live[-1].get("step"))
                    row.curve = sparkline([float(d["train_loss"]) for d in live])
        done = finished.get(name)
        if done is not None and not row.loss and done["metric"] is not None:
            row.loss = _fmt(done["metric"])  # nothing live: the metric its last run ended with
        if done is not None:
            row.last = " ".join(p for p in (done["exp"], signed(done["delta"]), done["verdict"]) if p)
            row.last_verdict = done["verdict"]
        if usage:
            row.tokens = human_count(sum(usage.get(k) or 0 for k in ("input_tokens", "cached_input_tokens",
                                                                      "output_tokens")))
            row.cost = "" if usage.get("cost_usd") is None else f"${usage['cost_usd']:.2f}"
        agents.append(row)
    best = ""
    if promotions:
        best = _fmt(promotions[-1]["metric"])
    else:
        head_baselines = [b for b in baselines if b["head"] == status["program_head"]]
        if head_baselines:
            best = f"{_fmt(head_baselines[-1]['mean'])} (baseline, n={head_baselines[-1]['n']})"
    recent = [{"exp": r["exp"], "kind": r["kind"], "agent": r["agent"], "metric": _fmt(r["metric"]),
               "delta": signed(r["delta"]), "verdict": r["verdict"], "description": r["description"]}
              for r in reversed(rows[-RECENT:])]
    lineage = [f"{(p['new_head'] or '')[:8]} {p['exp']} {p['agent']} {_fmt(p['metric'])} ({signed(p['delta'])})"
               f" {p['description']}".rstrip() for p in promotions[-RECENT:]]
    spend = [a.get("usage") or {} for a in status["agents"]]
    costs = [u["cost_usd"] for u in spend if u.get("cost_usd") is not None]
    tokens = sum(sum(u.get(k) or 0 for k in ("input_tokens", "cached_input_tokens", "output_tokens")) for u in spend)
    posts, board_error = _board(paths, cache)
    return Snapshot(
        tag=status["tag"], runtime=status["runtime"], running=status["running"],
        daemon_alive=status["daemon_alive"], program_branch=status["program_branch"],
        program_head=(status["program_head"] or "")[:10], metric=metric, direction=direction, arrow=arrow,
        best=best, promotions=len(promotions), experiments=sum(r["kind"] == "exp" for r in rows),
        compute_h=sum(r["wall_s"] or 0.0 for r in rows) / 3600,
        cost=f"${sum(costs):.2f}" if costs else "", tokens=human_count(tokens) if tokens else "",
        agents=agents, recent=recent, chart=_chart(rows, promotions, baselines),
        gate=_gate(verifying, by_exp, task), lineage=lineage, posts=posts, board_error=board_error,
        notices=_notices(paths, cache), stop_rules=_stop_rules(status.get("rules", [])))


def _stop_rules(rules: list[dict[str, Any]]) -> list[str]:
    """Stop rules worth a person's eye: fired ones, and those past half-way to firing."""
    return [f"{r['progress']} -> {'fired' if r['fired'] else r['action']}" for r in rules
            if r["fired"] or r["closeness"] >= 0.5]
