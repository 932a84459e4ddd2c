"""The figures of one org's run, from its ledger rows only (what the harness measured, never what agents said).

Compute is slot time: a run's wall time times the devices its slot held (`cpu3`: 1 core, `gpu0+1`: 2 GPUs), what
a person pays for. The verified metric is the program head's: the first baseline's mean, then each promotion's
verified mean. Pure functions: the bench and the reports call them on rows read from any org's ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from autoorg.clock import parse_iso

VERIFYING = ("verify", "baseline")


def devices(slot: str | None) -> int:
    """How many cores or GPUs a slot name holds: `cpu3` 1, `gpu0+1` 2 (unknown: 1)."""
    return 1 + (slot or "").count("+")


def run_seconds(row: dict[str, Any], now: datetime | None = None) -> float:
    """Slot-seconds a run used so far: its wall time (to now while it runs) times its devices."""
    if not row.get("started"):
        return 0.0
    end = parse_iso(row["finished"]) if row.get("finished") else now
    if end is None:
        return 0.0
    return max(0.0, (end - parse_iso(row["started"])).total_seconds()) * devices(row.get("slot"))


def spent_seconds(rows: list[dict[str, Any]], now: datetime | None = None) -> float:
    return sum(run_seconds(r, now) for r in rows)


def progress_curve(rows: list[dict[str, Any]], promotions: list[dict[str, Any]], start: float | None,
                   began: datetime) -> list[dict[str, float]]:
    """The program head's verified metric as compute is spent: one point at the start, one per promotion, each
    with the slot-hours of runs finished by then and the minutes since `began`."""
    if start is None:
        return []
    points = [{"compute_h": 0.0, "minutes": 0.0, "metric": start}]
    finished = sorted((parse_iso(r["finished"]), run_seconds(r)) for r in rows if r.get("finished") and
                      r.get("started"))
    for p in promotions:
        if p.get("metric") is None:
            continue
        at = parse_iso(p["ts"])
        spent = sum(s for end, s in finished if end <= at)
        points.append({"compute_h": spent / 3600, "minutes": (at - began).total_seconds() / 60,
                       "metric": float(p["metric"])})
    return points


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


def starting_metric(rows: list[dict[str, Any]], promotions: list[dict[str, Any]],
                    baselines: list[dict[str, Any]]) -> float | None:
    """The program head's metric before any promotion: the gate's first baseline, else the first promotion's head
    mean, else the mean of the baseline runs measured so far (an org stopped before its baseline was complete)."""
    if baselines:
        return float(baselines[0]["mean"])
    if promotions and promotions[0].get("head_mean") is not None:
        return float(promotions[0]["head_mean"])
    runs = [r["metric"] for r in rows if r["kind"] == "baseline" and r.get("metric") is not None and r.get("standard")
            and not r["verdict"].startswith(("crash", "void", "over budget"))]
    return sum(runs) / len(runs) if runs else None


def org_figures(rows: list[dict[str, Any]], promotions: list[dict[str, Any]], baselines: list[dict[str, Any]],
                usage: dict[str, dict[str, Any]], *, improvement: Callable[[float, float], float],
                better: Callable[[float, float], bool], began: datetime, ended: datetime,
                reference: float | None = None) -> dict[str, Any]:
    """Every figure of one org's run. `improvement(a, b)`: how much better a is than b (positive = better)."""
    start = starting_metric(rows, promotions, baselines)
    curve = progress_curve(rows, promotions, start, began)
    best = curve[-1]["metric"] if curve else None
    gain = improvement(best, start) if best is not None and start is not None else None
    spent = spent_seconds(rows, ended)
    verifying = sum(run_seconds(r, ended) for r in rows if r["kind"] in VERIFYING)
    first = curve[1] if len(curve) > 1 else None
    exps = [r for r in rows if r["kind"] == "exp"]
    singles = [r["metric"] for r in exps if r.get("metric") is not None and r.get("standard")]
    best_single = None
    for value in singles:
        if best_single is None or better(value, best_single):
            best_single = value
    kept = [e for agent_kept in kept_changes(rows, better).values() for e in agent_kept]
    promoted = {p["exp"] for p in promotions}
    tokens = sum(int(u.get(k) or 0) for u in usage.values()
                 for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"))
    costs = [u.get("cost_usd") for u in usage.values()]
    cost = sum(c for c in costs if c is not None) if costs and None not in costs else (None if costs else 0.0)
    gap = None
    if reference is not None and start is not None and gain is not None:
        possible = improvement(reference, start)
        gap = gain / possible if possible > 0 else None
    return {
        "start": start, "best": best, "improvement": gain, "reference": reference, "gap_closed": gap,
        "promotions": len(promotions), "experiments": len(exps),
        "crashes": sum(r["verdict"].startswith("crash") for r in rows),
        "voided": sum(r["verdict"].startswith(("void", "over budget")) for r in rows),
        "rejected": sum(r["verdict"].startswith("rejected") for r in rows),
        "compute_h": spent / 3600, "minutes": (ended - began).total_seconds() / 60,
        "verification_share": verifying / spent if spent else None,
        "first_promotion_minutes": first["minutes"] if first else None,
        "first_promotion_compute_h": first["compute_h"] if first else None,
        "improvement_per_compute_h": gain / (spent / 3600) if gain is not None and spent else None,
        "best_single_run": best_single,
        "kept": len(kept), "kept_confirmed": sum(e in promoted for e in kept),
        "tokens": tokens, "cost_usd": cost,
        "tokens_per_promotion": tokens / len(promotions) if promotions else None,
        "curve": curve,
    }
