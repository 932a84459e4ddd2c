"""The gate's statistics, pure: Student-t quantiles, σ pooled over replicate groups, the noise band."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

# ---------------------------------------------------------------------------------------------------------------
# Statistics


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def t_cdf(t: float, dof: int) -> float:
    """P(T ≤ t) for Student's t with an integer dof (Abramowitz & Stegun 26.7.3–4: exact, no tables)."""
    theta = math.atan(t / math.sqrt(dof))
    s, c = math.sin(theta), math.cos(theta)
    if dof % 2 == 1:
        term = total = c if dof > 1 else 0.0
        for k in range(3, dof - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        two_sided = 2 / math.pi * (theta + s * total)
    else:
        term = total = 1.0
        for k in range(2, dof - 1, 2):
            term *= c * c * (k - 1) / k
            total += term
        two_sided = s * total
    return 0.5 + two_sided / 2


@lru_cache(maxsize=4096)
def t_quantile(p: float, dof: int) -> float:
    """The t with P(T ≤ t) = p (p > 0.5), by bisection; for dof > 1000 the normal quantile is used."""
    if dof > 1000:
        lo, hi = 0.0, 40.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if normal_cdf(mid) < p else (lo, mid)
        return (lo + hi) / 2
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Noise:
    sigma: float | None
    dof: int


def pooled_noise(groups: list[list[float]]) -> Noise:
    """σ pooled over groups of repeated runs (each group: one tree, distinct seeds)."""
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return Noise(None, 0)
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    return Noise(math.sqrt(squares / dof), dof)



def band(noise_: Noise, n1: int, n2: int, head_mean: float, z: float, floor: float) -> float | None:
    """How much better than the head's mean a mean of n1 runs must be; None while σ is unknown."""
    if noise_.sigma is None or n1 < 1 or n2 < 1:
        return None
    q = t_quantile(normal_cdf(z), noise_.dof)
    return max(q * noise_.sigma * math.sqrt(1 / n1 + 1 / n2), floor * abs(head_mean))
