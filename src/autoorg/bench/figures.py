"""The figures of one org's run in a bench, from its ledger rows only (what the harness measured, never what agents
said): an org's report figures (`report/figures.py`, the same numbers `autoorg report` shows) plus what a comparison
of orgs needs: the share of the gap to a reference closed, autoresearch's kept changes and how many the gate's
re-runs confirmed, and the live slot time a running org has used (when to stop it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from autoorg.clock import iso, parse_iso
from autoorg.report.figures import compute_figures, devices, run_compute_h
from autoorg.spec import TaskSpec


def run_seconds(row: dict[str, Any], now: datetime) -> float:
    """Slot-seconds a run has used by `now` (live, so a running org can be stopped when its compute is spent):
    a finished run's slot time as its report counts it, a running one's wall time so far times its devices."""
    if row.get("finished"):
        return run_compute_h(row) * 3600
    if not row.get("started"):
        return 0.0
    return max(0.0, (now - parse_iso(row["started"])).total_seconds()) * devices(row.get("slot"))


def spent_seconds(rows: list[dict[str, Any]], now: datetime) -> float:
    return sum(run_seconds(r, now) for r in rows)


def kept_changes(rows: list[dict[str, Any]], better: Callable[[float, float], bool]) -> dict[str, list[str]]:
    """autoresearch's loop, replayed per agent: the experiments whose single run beat that agent's best so far
    (what it would have kept)."""
    best: dict[str, float] = {}
    kept: dict[str, list[str]] = {}
    for r in sorted((r for r in rows if r["kind"] == "exp" and r.get("metric") is not None and r.get("standard")
                     and r.get("finished")), key=lambda r: r["finished"]):
        agent = r["agent"]
        if agent not in best or better(r["metric"], best[agent]):
            if agent in best:
                kept.setdefault(agent, []).append(r["exp"])
            best[agent] = r["metric"]
    return kept


def org_figures(task: TaskSpec, rows: list[dict[str, Any]], promotions: list[dict[str, Any]],
                verifications: list[dict[str, Any]], baselines: list[dict[str, Any]],
                usage: dict[str, dict[str, Any]], *, began: datetime, ended: datetime,
                reference: float | None = None) -> dict[str, Any]:
    """Every figure of one org's run in a bench, as JSON-ready values."""
    fig = compute_figures(task, rows, promotions, verifications, baselines, usage, start=iso(began))
    start, best, gain = fig.start_metric, fig.best_metric, fig.improvement
    singles = [r["metric"] for r in rows if r["kind"] == "exp" and r.get("metric") is not None and r.get("standard")]
    best_single = None
    for value in singles:
        if best_single is None or task.better(value, best_single):
            best_single = value
    kept = [e for agent_kept in kept_changes(rows, task.better).values() for e in agent_kept]
    promoted = {p["exp"] for p in promotions}
    gap = None
    if reference is not None and start is not None and gain is not None:
        possible = task.improvement(reference, start)
        gap = gain / possible if possible > 0 else None
    shares = [s for s in (fig.verify_share, fig.baseline_share) if s is not None]
    return {
        "start": start, "best": best, "improvement": gain, "reference": reference, "gap_closed": gap,
        "promotions": fig.promotions, "experiments": fig.experiments, "crashes": fig.crashes,
        "voided": fig.refusals, "rejected": fig.rejected,
        "compute_h": fig.compute_h, "minutes": (ended - began).total_seconds() / 60,
        "verification_share": sum(shares) if shares else None,
        "first_promotion_minutes": fig.hours_to_first_promotion * 60 if fig.hours_to_first_promotion is not None
        else None,
        "first_promotion_compute_h": fig.compute_h_to_first_promotion,
        "improvement_per_compute_h": (gain or 0.0) / fig.compute_h if fig.compute_h and gain is not None else None,
        "best_single_run": best_single, "kept": len(kept), "kept_confirmed": sum(e in promoted for e in kept),
        "tokens": fig.tokens, "cost_usd": fig.cost_usd,
        "tokens_per_promotion": fig.tokens / fig.promotions if fig.promotions else None,
        "curve": [{"compute_h": s.compute_h, "minutes": s.hours * 60, "metric": s.metric} for s in fig.steps],
    }
