"""An org's figures, computed from its ledger rows alone (`ledger.experiments`, `promotions`, `verifications`,
`baselines`, `usage_totals`), so the bench computes the same figures for many orgs from their rows.

Compute is slot time: a run's `wall_s` (the harness's clock from start to measurement; for a run stopped before it
measured, its start to its end) times the devices its slot held (`cpu3` one core, `gpu0+1` two GPUs), in hours. The program head's
verified metric is the mean of the re-runs that promoted it (a promotion's `metric`); before any promotion it is the
starting head's baseline mean."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from autoorg.clock import parse_iso
from autoorg.experiments.ledger import UNFINISHED
from autoorg.gate.heads import same_seed_pairs
from autoorg.gate.stats import t_cdf
from autoorg.spec import TaskSpec

Row = dict[str, Any]


@dataclass
class Point:
    """One finished run on the progress chart."""
    exp: str
    kind: str  # exp | baseline | verify
    agent: str
    verdict: str
    metric: float | None
    hours: float  # since the org's first run was queued
    compute_h: float  # compute spent by every run finished up to and including this one


@dataclass
class Step:
    """The program head's verified metric from a moment on (the step line)."""
    hours: float
    compute_h: float
    metric: float


@dataclass
class Promotion:
    """A row of the lineage: what the gate promoted and how it was verified."""
    commit: str
    exp: str
    author: str
    message: str
    metric: float | None
    delta: float | None
    pairs: int  # same-seed re-run pairs that measured
    p: float | None  # one-sided p of "the candidate is no better" from those pairs' gains
    heldout_delta: float | None
    heldout_worse: bool
    ts: str


@dataclass
class Figures:
    metric: str
    direction: str
    start_metric: float | None  # the starting head's verified (baseline) metric
    best_metric: float | None  # the program head's verified metric now (None before a baseline)
    improvement: float | None  # best - start, positive = better
    promotions: int
    experiments: int
    crashes: int
    refusals: int  # runs the harness voided or found over budget
    rejected: int  # candidates the gate re-ran and did not promote
    compute_h: float
    verify_share: float | None  # of compute: the gate's re-runs
    baseline_share: float | None  # of compute: the head's baselines
    hours_to_first_promotion: float | None
    compute_h_to_first_promotion: float | None
    improvement_per_compute_h: float | None
    tokens: int
    cost_usd: float | None
    points: list[Point] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    lineage: list[Promotion] = field(default_factory=list)

    def headline(self) -> dict[str, Any]:
        """The figures without the series: what `--json` leads with and the dashboard shows."""
        return {k: v for k, v in asdict(self).items() if k not in ("points", "steps", "lineage")}


def devices(slot: str | None) -> int:
    """How many cores or GPUs a slot name holds: `cpu3` 1, `gpu0+1` 2 (unknown: 1)."""
    return 1 + (slot or "").count("+")


def run_compute_h(row: Row) -> float:
    """A finished run's slot time in hours."""
    seconds = row.get("wall_s")
    if seconds is None and row.get("started") and row.get("finished"):
        seconds = max(0.0, (parse_iso(row["finished"]) - parse_iso(row["started"])).total_seconds())
    return (seconds or 0.0) * devices(row.get("slot")) / 3600


def starting_metric(rows: list[Row], promotions: list[Row], baselines: list[Row]) -> float | None:
    """The starting head's verified metric: the first promotion's head mean, else the gate's first baseline,
    else the mean of the baseline runs measured so far (an org stopped before its baseline was complete)."""
    if promotions and promotions[0]["head_mean"] is not None:
        return float(promotions[0]["head_mean"])
    if baselines:
        return float(baselines[0]["mean"])
    runs = [r["metric"] for r in rows if r["kind"] == "baseline" and r["metric"] is not None and r["standard"]
            and not r["verdict"].startswith(("crash", "void", "over budget"))]
    return statistics.fmean(runs) if runs else None


def _hours(stamp: str, start: str) -> float:
    return (parse_iso(stamp) - parse_iso(start)).total_seconds() / 3600


def progress(rows: list[Row], promotions: list[Row], start_metric: float | None,
             start: str, task: TaskSpec) -> tuple[list[Point], list[Step]]:
    """Every finished run as a point in the order it finished (time and cumulative compute), and the program
    head's verified metric as a step line: the start, then each promotion at the compute spent when it landed."""
    finished = sorted((r for r in rows if r["verdict"] not in UNFINISHED),
                      key=lambda r: (r["finished"] or r["queued"], r["id"]))
    points: list[Point] = []
    spent = 0.0
    for r in finished:
        spent += run_compute_h(r)
        points.append(Point(exp=r["exp"], kind=r["kind"], agent=r["agent"], verdict=r["verdict"], metric=r["metric"],
                            hours=_hours(r["finished"] or r["queued"], start), compute_h=spent))
    steps = [Step(0.0, 0.0, start_metric)] if start_metric is not None else []
    for p, metric in zip(promotions, verified_metrics(promotions, task), strict=True):
        if metric is None:
            continue
        at = _hours(p["ts"], start)
        compute = max((pt.compute_h for pt in points if pt.hours <= at), default=0.0)
        steps.append(Step(at, compute, metric))
    return points, steps


def verified_metrics(promotions: list[Row], task: TaskSpec) -> list[float | None]:
    """The org's verified metric after each promotion: the latest promotion's (the mean of the re-runs that
    promoted it) on a single program branch; with islands, the best of every island's latest promotion."""
    latest: dict[str, float] = {}  # branch → its latest promotion's metric
    out: list[float | None] = []
    for p in promotions:
        if p["metric"] is not None:
            latest[p.get("branch") or ""] = p["metric"]
        out.append(max(latest.values(), key=lambda v: task.improvement(v, 0.0)) if latest else None)
    return out


def one_sided_p(gains: list[float]) -> float | None:
    """P(a mean gain this large | no true gain), Student's t over the pairs' gains; None under 2 pairs."""
    if len(gains) < 2:
        return None
    sd = statistics.stdev(gains)
    mean = statistics.fmean(gains)
    if sd == 0:
        return 0.0 if mean > 0 else 1.0
    return 1 - t_cdf(mean / (sd / math.sqrt(len(gains))), len(gains) - 1)


def lineage(promotions: list[Row], verifications: list[Row], rows: list[Row], task: TaskSpec) -> list[Promotion]:
    """The promotions, oldest first, each with its same-seed pairs and their p (from the verification that
    promoted it) and its held-out check."""
    by_exp = {r["exp"]: r for r in rows}
    promoting = {v["exp"]: v for v in verifications if v["status"] == "promoted"}
    out = []
    for p in promotions:
        ver = promoting.get(p["exp"])
        pairs = same_seed_pairs([by_exp[e] for e in ver["runs"] if e in by_exp], ver["head"]) if ver else []
        out.append(Promotion(
            commit=(p["new_head"] or "")[:10], exp=p["exp"], author=p["agent"], message=p["description"],
            metric=p["metric"], delta=p["delta"], pairs=len(pairs),
            p=one_sided_p([task.improvement(c, h) for h, c in pairs]),
            heldout_delta=p.get("heldout_delta"), heldout_worse=bool(p.get("heldout_worse")), ts=p["ts"]))
    return out


def compute_figures(task: TaskSpec, rows: list[Row], promotions: list[Row], verifications: list[Row],
                    baselines: list[Row], usage: dict[str, Row], *, start: str | None = None) -> Figures:
    """The figures of one org from its ledger rows; `start` (ISO) is when the org began, by default when its
    first run was queued."""
    start = start or min((r["queued"] for r in rows), default=None) or "1970-01-01T00:00:00Z"
    start_metric = starting_metric(rows, promotions, baselines)
    best = verified_metrics(promotions, task)[-1] if promotions else start_metric
    improvement = task.improvement(best, start_metric) if best is not None and start_metric is not None else None
    points, steps = progress(rows, promotions, start_metric, start, task)
    compute = points[-1].compute_h if points else 0.0
    by_kind = {k: sum(run_compute_h(r) for r in rows if r["kind"] == k and r["verdict"] not in UNFINISHED)
               for k in ("verify", "baseline")}
    first = steps[1] if promotions and len(steps) > 1 else None
    exps = [r for r in rows if r["kind"] == "exp"]
    costs = [u["cost_usd"] for u in usage.values()]
    return Figures(
        metric=task.metric, direction=task.direction, start_metric=start_metric, best_metric=best,
        improvement=improvement, promotions=len(promotions), experiments=len(exps),
        crashes=sum(r["verdict"].startswith("crash") for r in exps),
        refusals=sum(r["verdict"].startswith(("void", "over budget")) for r in exps),
        rejected=sum(v["status"] == "rejected" for v in verifications),
        compute_h=compute,
        verify_share=by_kind["verify"] / compute if compute else None,
        baseline_share=by_kind["baseline"] / compute if compute else None,
        hours_to_first_promotion=first.hours if first else None,
        compute_h_to_first_promotion=first.compute_h if first else None,
        improvement_per_compute_h=improvement / compute if improvement is not None and compute and promotions
        else None,
        tokens=sum(sum(u.get(k) or 0 for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                                              "output_tokens")) for u in usage.values()),
        cost_usd=None if not costs or any(c is None for c in costs) else sum(costs),
        points=points, steps=steps, lineage=lineage(promotions, verifications, rows, task))
