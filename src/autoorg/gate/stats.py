"""The gate's statistics, pure: Student-t and chi-square quantiles, σ pooled over replicate groups (without groups
that ignore their seed), the noise band."""

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


CORNISH_FISHER_DOF = 100  # above this, t's quantile by its expansion around the normal's (error < 1e-9 here)


@lru_cache(maxsize=4096)
def t_quantile(p: float, dof: int) -> float:
    """The t with P(T ≤ t) = p (p > 0.5): by bisection on the exact cdf, or for dof > CORNISH_FISHER_DOF by the
    Cornish–Fisher expansion (Abramowitz & Stegun 26.7.5), which the exact cdf's O(dof) cost makes worth it."""
    if dof > CORNISH_FISHER_DOF:
        z = statistics.NormalDist().inv_cdf(p)
        v = float(dof)
        return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
                + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
                + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))
    hi = 1.0
    while t_cdf(hi, dof) < p and hi < 1e6:
        hi *= 2
    lo = hi / 2 if hi > 1 else 0.0
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Noise:
    sigma: float | None
    dof: int


def _pool(groups: list[list[float]]) -> Noise:
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return Noise(None, 0)
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    return Noise(math.sqrt(squares / dof), dof)


def pooled_noise(groups: list[list[float]]) -> Noise:
    """σ pooled over groups of repeated runs (each group: one tree, distinct seeds), leaving out every group that
    ignores its seed against the pool of the others (`ignores_seed`): its near-zero spread would shrink σ and
    with it every band."""
    honest = [g for i, g in enumerate(groups) if not ignores_seed(g, _pool(groups[:i] + groups[i + 1:]))]
    return _pool(honest)


# ---------------------------------------------------------------------------------------------------------------
# Runs that ignore their seed
#
# n runs of one tree on distinct seeds, honest, have (n−1)s²/σ² ~ χ²(n−1) (s: their sample standard deviation).
# A run that pins its own seed gives n identical values; a recipe that damps its noise by far gives a spread far
# below σ. Both are caught by the lower tail: (n−1)s²/σ² < χ²⁻¹(SEED_P; n−1). SEED_P = 1e-3 wrongly flags one
# honest group in a thousand (whose exclusion changes σ by nothing measurable); at n = 2 it flags a spread below
# 0.0013σ (χ²⁻¹(1e-3; 1) = 1.6e-6), at n = 4 one below 0.09σ. Identical values are flagged at any σ.

SEED_P = 1e-3


def chi2_cdf(x: float, dof: int) -> float:
    """P(X ≤ x) for chi-square with dof degrees of freedom: the regularized lower incomplete gamma P(dof/2, x/2),
    by its power series (exact to double precision for the small x the seed test reads)."""
    if x <= 0:
        return 0.0
    a, h = dof / 2, x / 2
    term = total = 1 / a
    k = 0
    while term > total * 1e-17 and k < 10_000:
        k += 1
        term *= h / (a + k)
        total += term
    return min(1.0, math.exp(a * math.log(h) - h - math.lgamma(a)) * total)


@lru_cache(maxsize=1024)
def chi2_quantile(p: float, dof: int) -> float:
    """The x with P(X ≤ x) = p, by bisection on a log scale."""
    lo, hi = 1e-300, 10.0 * dof + 100.0
    for _ in range(400):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if chi2_cdf(mid, dof) < p else (lo, mid)
    return math.sqrt(lo * hi)


def ignores_seed(values: list[float], noise_: Noise, p: float = SEED_P) -> bool:
    """Do these runs of one tree on distinct seeds vary far less than the org's noise (or not at all)?"""
    if len(values) < 2:
        return False
    if max(values) == min(values):
        return True
    if noise_.sigma is None or noise_.sigma == 0:
        return False
    n = len(values)
    spread = sum((x - statistics.fmean(values)) ** 2 for x in values) / noise_.sigma ** 2
    return spread < chi2_quantile(p, n - 1)



def band(noise_: Noise, n1: int, n2: int, head_mean: float, z: float, floor: float) -> float | None:
    """How much better than the head's mean a mean of n1 runs must be; None while σ is unknown."""
    if noise_.sigma is None or n1 < 1 or n2 < 1:
        return None
    q = t_quantile(normal_cdf(z), noise_.dof)
    return max(q * noise_.sigma * math.sqrt(1 / n1 + 1 / n2), floor * abs(head_mean))


# ---------------------------------------------------------------------------------------------------------------
# Paired, sequential verification
#
# A candidate is re-run in same-seed pairs: pair i runs the head and the candidate together, on two slots, with
# one fresh seed, and dᵢ = the candidate's improvement over the head in that pair. What moves both runs of a pair
# alike (the machine's load, the part of the seed's noise that does not depend on the recipe) cancels in dᵢ. The
# dᵢ are independent draws with mean δ (the true gain) and a σ_d no larger than √2·σ: equal when a pair shares
# nothing, smaller the more it shares (sharing the other way, one seed good for one recipe exactly when it is bad
# for the other, is not how training noise behaves and is not allowed for).
#
# The pairs are judged at looks after n₁ < n₂ < … < n_L pairs (`looks`). With σ_d estimated independently of
# the pairs being judged, with dof ν, t = d̄·√n / σ̂_d is Student-t with ν dof when δ = 0. The rule:
#
#   promote at the first look where  d̄ > max(q·σ̂_d/√n, min_gain),  q = t⁻¹(1 − α/L; ν),  α = 1 − Φ(z)
#   reject  at an interim look where d̄·√n/σ̂_d ≤ FUTILITY_T, and at the last look when not promoted
#
# Spending α/L at each look (Bonferroni over the looks) bounds the chance that any look promotes a no-effect
# candidate by α whatever the correlation between looks, so the error rate is the one `z` states for a single
# test; an exact Pocock boundary would be a little lower (≈ 5% fewer pairs) for a proof that needs numerics.
# Futility stops can only make a promotion rarer, never easier, so they cost nothing in false promotions; at
# FUTILITY_T = 0.5 a no-effect candidate stops at the first look ~69% of the time and a 3σ win is lost to it
# well under 1% of the time (tests/test_gate_stats.py simulates both, and benchmarks/gate.py --simulate the
# whole procedure, screening and baselines included).

FUTILITY_T = 0.5
PAIRS_PER_LOOK = 2


def looks(max_pairs: int) -> tuple[int, ...]:
    """The numbers of pairs at which a verification is judged: every PAIRS_PER_LOOK pairs up to max_pairs."""
    return (*range(PAIRS_PER_LOOK, max_pairs, PAIRS_PER_LOOK), max_pairs)


def promotion_bound(noise_: Noise, n: int, z: float, n_looks: int) -> float | None:
    """How much the mean paired gain of n pairs must exceed to promote (None while σ_d is unknown)."""
    if noise_.sigma is None or n < 1:
        return None
    alpha = 1 - normal_cdf(z)
    return t_quantile(1 - alpha / n_looks, noise_.dof) * noise_.sigma / math.sqrt(n)


def paired_verdict(gains: list[float], noise_: Noise, z: float, max_pairs: int, min_gain: float = 0.0) -> str:
    """`promote`, `reject` or `continue` for the paired gains landed so far (positive = the candidate better),
    judged only at a look (see above); noise_ is σ_d, estimated without these gains."""
    n = len(gains)
    schedule = looks(max_pairs)
    if n not in schedule:
        return "continue" if n < max_pairs else "reject"
    bound = promotion_bound(noise_, n, z, len(schedule))
    if bound is None:
        return "continue" if n < max_pairs else "reject"
    mean = statistics.fmean(gains)
    if mean > max(bound, min_gain):
        return "promote"
    assert noise_.sigma is not None
    if n >= max_pairs or (noise_.sigma > 0 and mean * math.sqrt(n) / noise_.sigma <= FUTILITY_T):
        return "reject"
    return "continue"


def pair_noise(pooled_pairs: Noise, runs: Noise, min_dof: int) -> Noise:
    """σ_d: pooled from the paired gains of past verifications once they have min_dof, else √2·σ of single runs
    (exact when pairs share nothing, an overestimate when they share)."""
    if pooled_pairs.sigma is not None and pooled_pairs.dof >= min_dof:
        return pooled_pairs
    if runs.sigma is None:
        return Noise(None, 0)
    return Noise(math.sqrt(2) * runs.sigma, runs.dof)
