"""Many cells → one table: each figure's mean ± spread over repeats per org and task, and whether two orgs differ.

Two orgs are compared on their verified improvement per repeat with an exact permutation test (every relabelling
of the repeats when there are at most 20,000, else 20,000 seeded random ones): the share of relabellings whose
difference of means is at least the one observed. No normality is assumed, which matters at five repeats.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

SUMMARISED = ("improvement", "gap_closed", "best", "first_promotion_minutes", "first_promotion_compute_h",
              "improvement_per_compute_h", "verification_share", "compute_h", "promotions", "experiments",
              "crashes", "rejected", "kept", "kept_confirmed", "tokens", "cost_usd")
EXACT_LIMIT = 20_000
ALPHA = 0.05


@dataclass
class Spread:
    mean: float | None
    sd: float | None
    n: int  # repeats that had a value

    def text(self, digits: int = 3) -> str:
        if self.mean is None:
            return "-"
        sd = f" ± {self.sd:.{digits}g}" if self.sd is not None else ""
        return f"{self.mean:.{digits}g}{sd}"


@dataclass
class OrgSummary:
    org: str
    task: str
    baseline: bool
    repeats: int
    figures: dict[str, Spread] = field(default_factory=dict)
    improvements: list[float] = field(default_factory=list)
    first_promotion_rate: float = 0.0
    curves: list[list[dict[str, float]]] = field(default_factory=list)


def spread(values: list[Any]) -> Spread:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return Spread(None, None, 0)
    return Spread(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def summarise(results: list[dict[str, Any]]) -> list[OrgSummary]:
    """One summary per (org, task), in the order orgs first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["org"], r["task"]), []).append(r)
    out = []
    for (org, task), rs in groups.items():
        figs = [r["figures"] for r in rs]
        s = OrgSummary(org=org, task=task, baseline=bool(rs[0].get("baseline")), repeats=len(rs))
        s.figures = {k: spread([f.get(k) for f in figs]) for k in SUMMARISED}
        s.improvements = [f["improvement"] if f.get("improvement") is not None else 0.0 for f in figs]
        s.first_promotion_rate = sum(f.get("promotions", 0) > 0 for f in figs) / len(figs)
        s.curves = [f.get("curve") or [] for f in figs]
        out.append(s)
    return out


def permutation_p(a: list[float], b: list[float], *, seed: int = 0) -> float | None:
    """Two-sided p of the difference of means of a and b under relabelling (None with fewer than 2 each)."""
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = a + b
    observed = abs(statistics.fmean(a) - statistics.fmean(b))
    total = sum(pooled)

    def extreme(idx: tuple[int, ...]) -> bool:
        sa = sum(pooled[i] for i in idx)
        diff = abs(sa / len(a) - (total - sa) / len(b))
        return diff >= observed - 1e-12

    n = len(pooled)
    if math.comb(n, len(a)) <= EXACT_LIMIT:
        combos = list(itertools.combinations(range(n), len(a)))
        return sum(extreme(c) for c in combos) / len(combos)
    rng = random.Random(seed)
    hits = sum(extreme(tuple(rng.sample(range(n), len(a)))) for _ in range(EXACT_LIMIT))
    return (hits + 1) / (EXACT_LIMIT + 1)


def compare(x: OrgSummary, y: OrgSummary) -> dict[str, Any]:
    """Is x's verified improvement different from y's across repeats?"""
    p = permutation_p(x.improvements, y.improvements)
    diff = statistics.fmean(x.improvements) - statistics.fmean(y.improvements) if x.improvements and \
        y.improvements else None
    return {"a": x.org, "b": y.org, "task": x.task, "difference": diff, "p": p,
            "significant": p is not None and p < ALPHA}


def comparisons(summaries: list[OrgSummary]) -> list[dict[str, Any]]:
    """Every pair of orgs on the same task."""
    out = []
    for x, y in itertools.combinations(summaries, 2):
        if x.task == y.task:
            out.append(compare(x, y))
    return out
