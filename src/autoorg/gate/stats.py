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
# honest group in a thousand (whose exclusion changes σ by nothing measurable); at n = 4 it flags a spread below
# 0.09σ. Two values are tested at SEED_P_TWO = 1e-5 (two runs closer than 1.8e-5σ): at 1e-3 one honest
# verification in a thousand that would promote at two pairs was rejected as ignoring its seed (in clean-clone CI:
# 1.281277 and 1.281279, σ 0.0022), and two values say little else; a pinned seed gives identical values, flagged
# at any σ, and a later look's four or eight at SEED_P.

SEED_P = 1e-3
SEED_P_TWO = 1e-5


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


def ignores_seed(values: list[float], noise_: Noise, p: float | None = None) -> bool:
    """Do these runs of one tree on distinct seeds vary far less than the org's noise (or not at all)? At `p`
    (default SEED_P, SEED_P_TWO for two values)."""
    if len(values) < 2:
        return False
    if max(values) == min(values):
        return True
    if noise_.sigma is None or noise_.sigma == 0:
        return False
    n = len(values)
    p = p if p is not None else (SEED_P_TWO if n == 2 else SEED_P)
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
# alike (the machine's load, the part of the seed's noise that does not depend on the recipe: initialisation,
# data order) cancels in dᵢ. The dᵢ are independent draws with mean δ (the true gain) and a σ_d no larger than
# √2·σ: equal when a pair shares nothing, smaller the more it shares (sharing the other way, one seed good for one
# recipe exactly when it is bad for the other, is not how training noise behaves and is not allowed for).
#
# σ_d has two estimates, and the rule tests against both, each at half the error rate:
# - √2·σ of single runs: a bound whatever the pairs share, known from the first pair (σ from the baselines);
# - the pairs' own spread, pooled with the pairs of the org's other verifications (each group about its own mean;
#   groups that ignore their seed left out), dof ν = Σ(nᵢ − 1), once ν ≥ PAIRED_MIN_DOF. Under δ = 0 and normal
#   noise, d̄·√n/σ̂_d is Student-t with ν dof at any one look (a sample's mean and its spread are independent), so
#   a verification's own pairs may set it. It is never taken below PAIRED_FLOOR·√2·σ: a candidate whose gains do
#   not vary (its noise copies the head's, or both arms ignore their seed) cannot shrink its bar to nothing.
# Where pairs share most of their noise (real training: initialisation and data order) the second bar is the lower
# one, and once the org has a few verifications a 3σ win is decided in the first look; where they share nothing
# the first keeps the power of the unpaired test.
#
# The pairs are judged at looks after n₁ < n₂ < … < n_L pairs (`looks`: 1, 2, 4, …, R). The rule, with E the
# estimates in use:
#
#   reject  at the first look (one pair) where d₁ ≤ FIRST_FUTILITY (it never promotes: `promoting_looks`)
#   promote at a later look where    d̄ > max(min over E of q_E·σ̂_E/√n, min_gain),
#                                    q_E = t⁻¹(1 − α/(L·|E|); ν_E),  α = 1 − Φ(z), L the looks that may promote
#   reject  at an interim look where d̄·√n/σ_max ≤ FUTILITY_T (LATE_FUTILITY_T from LATE_FUTILITY_PAIRS pairs),
#           and at the last look when not promoted
#
# Spending α/(L·|E|) on each estimate at each look (Bonferroni over the looks and the estimates) bounds the chance
# that any look promotes a no-effect candidate by α whatever the correlation between them, so the error rate is
# the one `z` states for a single test. Futility stops can only make a promotion rarer, never easier, so they
# cost nothing in false promotions: at the first look a candidate that did no better than the head on their
# shared seed stops (half of the no-effect ones, after one pair instead of two; a 3σ win whose pairs share
# nothing is lost there 2% of the time), at later looks one whose d̄·√n/σ_max ≤ FUTILITY_T = 0.5, and from 4 pairs
# on one whose d̄·√n/σ_max ≤ LATE_FUTILITY_T = 1.5: by then a 3σ win's statistic is about 4.2 ± 1 (2.5σ: 3.5 ± 1),
# while a change worth half a σ, which never clears the bar, used to run all 8 pairs. Simulated (below, pairs that
# share nothing): pairs per decision 2.75 → 2.27 for no effect, 3.96 → 3.22 at 0.5σ, 5.29 → 4.48 at 1σ; a 3σ win
# promoted 94.0% → 94.2%, a 2.5σ win 76.2% → 76.5% (no loss: 1.5 costs them ~0.3% and ~2%). A bound of 2.0 cost a
# 3σ win 1.5 points.
# tests/test_gate_stats.py simulates the error rates and pairs spent, with and without shared
# noise, in a fresh org and in one with earlier verifications.

FUTILITY_T = 0.5
LATE_FUTILITY_PAIRS = 4  # from this many pairs on, an interim look stops at LATE_FUTILITY_T
LATE_FUTILITY_T = 1.5
FIRST_FUTILITY = 0.0  # at the first look (one pair): stop a candidate that did no better than the head
PAIRED_MIN_DOF = 2  # dof of the pairs' own σ_d before it is tested against
PAIRED_FLOOR = 0.25  # σ̂_d ≥ this × √2·σ


def looks(max_pairs: int) -> tuple[int, ...]:
    """The numbers of pairs at which a verification is judged: 1, then doubling, up to max_pairs (1, 2, 4, 8).
    The first look, at one pair, only stops candidates (futility): half the no-effect ones stop there. Doubling
    keeps the looks that may promote few (each costs α/L)."""
    schedule, n = [], 1
    while n < max_pairs:
        schedule.append(n)
        n *= 2
    return (*schedule, max_pairs)


def promoting_looks(max_pairs: int) -> int:
    """How many looks may promote: all but a first look of one pair (unless it is the only one). One pair never
    promotes: it cannot show that the candidate's runs vary with their seed, nor how its own gains spread (a
    candidate that pinned a lucky seed shares none of the head's seed noise, which σ_d of other verifications
    assumes)."""
    return max(1, len(looks(max_pairs)) - 1)


def promotion_bound(estimates: tuple[Noise, ...], n: int, z: float, n_looks: int) -> tuple[float, Noise] | None:
    """How much the mean paired gain of n pairs must exceed to promote, and the σ_d estimate that sets it (None
    while σ_d is unknown): the lowest bar over the estimates, each at α/(looks·estimates)."""
    known = [e for e in estimates if e.sigma is not None]
    if not known or n < 1:
        return None
    alpha = 1 - normal_cdf(z)
    bars = [(t_quantile(1 - alpha / (n_looks * len(known)), e.dof) * e.sigma / math.sqrt(n), e)  # type: ignore[operator]
            for e in known]
    return min(bars, key=lambda bar: bar[0])


def after_pairs(estimates: tuple[Noise, ...], pairs: int, added: int) -> tuple[Noise, ...]:
    """σ_d's estimates (`pair_noise`) as they will stand once `added` more pairs land on a verification with `pairs`
    so far, each σ as it is now: every pair adds a run to the head's tree and one to the candidate's (2 dof to
    √2·σ's) and a gain to the verification's own group in the pooled estimate (once that group has two). Only for
    scheduling, never a decision: a look is judged on the estimates it finds. In a fresh org √2·σ has the 3 dof of
    4 baselines: its quantile at z 2.9 is 12.0, and 5.2 at the 7 dof the first two pairs bring."""
    if not estimates:
        return ()
    own = max(0, pairs + added - 1) - max(0, pairs - 1)
    runs, *pooled = estimates
    return (Noise(runs.sigma, runs.dof + 2 * added), *(Noise(e.sigma, e.dof + own) for e in pooled))


def bar_after(estimates: tuple[Noise, ...], pairs: int, added: int, z: float,
              max_pairs: int) -> tuple[float, Noise] | None:
    """The bar the look at `pairs` + `added` pairs will set (promotion_bound), σ_d's estimates as those pairs will
    leave them (after_pairs): what the gate schedules by, never what it decides by."""
    return promotion_bound(after_pairs(estimates, pairs, added), pairs + added, z, promoting_looks(max_pairs))


def paired_verdict(gains: list[float], estimates: tuple[Noise, ...], z: float, max_pairs: int,
                   min_gain: float = 0.0) -> str:
    """`promote`, `reject` or `continue` for the paired gains landed so far (positive = the candidate better),
    judged only at a look (see above); estimates are σ_d's (`pair_noise`)."""
    n = len(gains)
    schedule = looks(max_pairs)
    if n not in schedule:
        return "continue" if n < max_pairs else "reject"
    mean = statistics.fmean(gains)
    if n == 1 and len(schedule) > 1:  # the first look only stops
        return "reject" if mean <= FIRST_FUTILITY else "continue"
    bar = promotion_bound(estimates, n, z, promoting_looks(max_pairs))
    if bar is None:
        return "continue" if n < max_pairs else "reject"
    if mean > max(bar[0], min_gain):
        return "promote"
    sigma = max(e.sigma for e in estimates if e.sigma is not None)
    futility = LATE_FUTILITY_T if n >= LATE_FUTILITY_PAIRS else FUTILITY_T
    if n >= max_pairs or (sigma > 0 and mean * math.sqrt(n) / sigma <= futility):
        return "reject"
    return "continue"


def pair_noise(gains: list[float], others: list[list[float]], runs: Noise) -> tuple[Noise, ...]:
    """σ_d's estimates for a verification whose paired gains so far are `gains`: √2·σ of single runs (exact when
    pairs share nothing, an overestimate when they share), and, once they have PAIRED_MIN_DOF, the gains' own
    spread pooled with the other verifications' groups, never below PAIRED_FLOOR·√2·σ. () while σ is unknown."""
    if runs.sigma is None:
        return ()
    unpaired = math.sqrt(2) * runs.sigma
    bound = Noise(unpaired, runs.dof)
    pooled = pooled_noise([gains, *others])
    if pooled.sigma is None or pooled.dof < PAIRED_MIN_DOF:
        return (bound,)
    return bound, Noise(max(pooled.sigma, PAIRED_FLOOR * unpaired), pooled.dof)


def head_runs_needed(k: int, dof: int) -> int:
    """Runs a program head needs before anything is judged against it, when the org's σ has `dof` degrees of
    freedom: all K while σ is new, then half of K (at least 2). Once σ is known a head's mean only draws the
    screening line (its band widens with 1/n), and verifications decide on same-seed pairs, which use no head mean;
    a promoted head already has its candidate's run and its arm of the pairs."""
    return k if dof < k else min(k, max(2, math.ceil(k / 2)))
