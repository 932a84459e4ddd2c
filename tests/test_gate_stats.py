"""The gate's pure statistics: chi-square quantiles, the seed test, σ without seed-ignoring groups, and the paired
sequential rule's error rates by a seeded simulation."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from autoorg.gate import stats
from autoorg.gate.stats import Noise
from autoorg.spec.processes import Baseline


def test_chi_square_quantiles_match_the_tables() -> None:
    for p, dof, table in ((0.05, 1, 0.00393), (0.001, 1, 1.571e-6), (0.05, 4, 0.711), (0.5, 4, 3.357),
                          (0.001, 7, 0.598), (0.95, 10, 18.307), (0.01, 30, 14.953)):
        assert stats.chi2_quantile(p, dof) == pytest.approx(table, rel=2e-3)


def test_runs_that_do_not_vary_with_their_seed_are_caught() -> None:
    org = Noise(0.01, 20)
    assert stats.ignores_seed([0.9, 0.9], Noise(None, 0))  # identical: caught even before σ is known
    assert stats.ignores_seed([0.9, 0.9, 0.9, 0.9], org)
    assert stats.ignores_seed([0.9, 0.9 + 1e-6, 0.9 - 1e-6, 0.9], org)  # a spread of 1e-4 σ
    assert not stats.ignores_seed([0.9, 0.91], org)
    assert not stats.ignores_seed([0.9], org)
    # two values: closer than 1.8e-5 σ (SEED_P_TWO), not 1.8e-3 σ (an honest pair in CI was 1e-3 σ apart)
    assert stats.ignores_seed([0.9, 0.9 + 1e-7], org) and not stats.ignores_seed([0.9, 0.9 + 1e-5], org)
    rng = random.Random(12)
    honest = sum(stats.ignores_seed([rng.gauss(1.0, 0.01) for _ in range(n)], org)
                 for n in (2, 3, 4, 8) for _ in range(5000))
    assert honest <= 20 * 5000 * 4 * stats.SEED_P  # ≈ SEED_P of honest groups (20·σ-estimate slack)
    assert sum(stats.ignores_seed([rng.gauss(1.0, 0.01) for _ in range(2)], org) for _ in range(20000)) <= 2


def test_groups_that_ignore_their_seed_do_not_shrink_the_pooled_sigma() -> None:
    honest = [[1.0, 3.0], [10.0, 12.0, 14.0]]
    pinned = [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]
    assert stats.pooled_noise(honest + pinned) == stats.pooled_noise(honest)
    assert stats.pooled_noise(honest).dof == 3


def test_looks_and_the_promotion_bound() -> None:
    assert stats.looks(8) == (1, 2, 4, 8) and stats.looks(3) == (1, 2, 3) and stats.looks(1) == (1,)
    assert stats.looks(6) == (1, 2, 4, 6)
    sigma = (Noise(0.01, 10_000),)
    # α/L at each look: with one look the bound is the plain one-sided test at z
    assert stats.promotion_bound(sigma, 4, 2.9, 1)[0] == pytest.approx(2.9 * 0.01 / 2, rel=1e-3)  # type: ignore[index]
    assert stats.promotion_bound(sigma, 4, 2.9, 4) > stats.promotion_bound(sigma, 4, 2.9, 1)  # type: ignore[operator]
    assert stats.promotion_bound((), 4, 2.9, 4) is None
    # two estimates: each at α/2, the lower bar wins
    both = (Noise(0.01, 10_000), Noise(0.002, 10_000))
    bar, by = stats.promotion_bound(both, 4, 2.9, 1)  # type: ignore[misc]
    assert by == both[1] and bar == pytest.approx(stats.t_quantile(1 - (1 - stats.normal_cdf(2.9)) / 2, 10_000)
                                                  * 0.002 / 2, rel=1e-6)
    assert stats.paired_verdict([0.05, 0.05], sigma, 2.9, 8) == "promote"
    # the first look, one pair: a candidate that did no better than the head on their seed stops there, and
    # nothing is promoted on one pair (its seed check and its own spread need two); it spends no α
    assert stats.paired_verdict([0.0], sigma, 2.9, 8) == "reject"
    assert stats.paired_verdict([0.001], sigma, 2.9, 8) == "continue"
    assert stats.paired_verdict([1.0], sigma, 2.9, 8) == "continue"
    assert stats.promoting_looks(8) == 3 and stats.promoting_looks(1) == 1 and stats.paired_verdict(
        [1.0], sigma, 2.9, 1) == "promote"
    assert stats.paired_verdict([-0.01, 0.0], sigma, 2.9, 8) == "reject"  # futile
    assert stats.paired_verdict([0.01, 0.015], sigma, 2.9, 8) == "continue"
    assert stats.paired_verdict([0.01, 0.015, 0.01], sigma, 2.9, 8) == "continue"  # not a look
    assert stats.paired_verdict([0.01] * 8, sigma, 2.9, 8) == "reject"  # the last look
    # from 4 pairs on, a gain under 1.5 standard errors stops: it would not clear the bar at 8 (t 1.2 here)
    assert stats.paired_verdict([0.006] * 2, sigma, 2.9, 8) == "continue"
    assert stats.paired_verdict([0.006] * 4, sigma, 2.9, 8) == "reject"
    assert stats.paired_verdict([0.01] * 4, sigma, 2.9, 8) == "continue"  # t 2.0
    assert stats.paired_verdict([0.05, 0.05], sigma, 2.9, 8, min_gain=0.1) != "promote"


def test_sigma_d_comes_from_the_pairs_once_they_have_the_dof_and_never_below_the_floor() -> None:
    runs = Noise(0.01, 7)
    bound = Noise(math.sqrt(2) * 0.01, 7)
    assert stats.pair_noise([0.01, 0.02], [], runs) == (bound,)  # 1 dof of its own: √2·σ alone
    assert stats.pair_noise([0.01, 0.02], [], Noise(None, 0)) == ()
    own = [0.010, 0.016, 0.004]  # 2 dof of its own
    assert stats.pair_noise(own, [], runs) == (bound, Noise(pytest.approx(statistics.stdev(own)), 2))
    _, pooled = stats.pair_noise([0.01, 0.02], [[0.0, 0.01, 0.005]], runs)  # 1 + 2 dof, each about its mean
    assert pooled.dof == 3 and pooled.sigma == pytest.approx(math.sqrt((2 * 0.005**2 + 2 * 0.005**2) / 3))
    # gains that do not vary, or barely: the floor, never a bar of zero
    _, flat = stats.pair_noise([0.03, 0.03 + 1e-9, 0.03, 0.03 - 1e-9], [], runs)
    assert flat.sigma == pytest.approx(stats.PAIRED_FLOOR * math.sqrt(2) * 0.01)
    assert stats.paired_verdict([0.003] * 4, (bound, flat), 2.9, 8) != "promote"


def test_the_estimates_a_next_look_will_judge_by_keep_their_sigma_and_gain_the_dof_of_its_pairs() -> None:
    bound, pooled = Noise(0.04, 3), Noise(0.02, 5)
    assert stats.after_pairs((bound,), 0, 2) == (Noise(0.04, 7),)  # each pair: a run of the head, one of the change
    assert stats.after_pairs((bound, pooled), 0, 2) == (Noise(0.04, 7), Noise(0.02, 6))  # its own group: 1 dof
    assert stats.after_pairs((bound, pooled), 2, 2) == (Noise(0.04, 7), Noise(0.02, 7))
    assert stats.after_pairs((), 0, 2) == () and stats.after_pairs((bound,), 2, 0) == (bound,)
    # a fresh org's 4 baselines (3 dof): two pairs' dof more than halve the bar a claim must clear to start at once
    now = stats.promotion_bound((bound,), 2, 2.9, 3)
    then = stats.promotion_bound(stats.after_pairs((bound,), 0, 2), 2, 2.9, 3)
    assert now is not None and then is not None and then[0] < now[0] / 2


def simulate(effect: float, trials: int, *, shared: float = 0.0, earlier: int = 0,
             baselines: int = Baseline().repeats, seed: int = 1) -> tuple[float, float]:
    """(promotion rate, mean pairs per decision) of the paired rule at the default z = 2.9, R = 8 and K, as the gate
    runs it: σ pooled over the head's baselines and arms and the candidate's arms (σ in units of 1), σ_d's
    estimates from it and from the pairs, pooled with `earlier` verifications of 4 pairs (gate.stats.pair_noise),
    a true gain of `effect`, pairs sharing `shared` of their variance."""
    rng = random.Random(seed)
    promoted = pairs = 0
    for _ in range(trials):
        head = [rng.gauss(0, 1) for _ in range(baselines)]
        others = [[rng.gauss(0, math.sqrt(2 * (1 - shared))) for _ in range(4)] for _ in range(earlier)]
        cand: list[float] = []
        gains: list[float] = []
        verdict = "continue"
        while verdict == "continue":
            common = rng.gauss(0, math.sqrt(shared))
            head.append(common + rng.gauss(0, math.sqrt(1 - shared)))
            cand.append(common + rng.gauss(0, math.sqrt(1 - shared)) - effect)
            gains.append(head[-1] - cand[-1])
            if len(gains) in stats.looks(8):
                sigma_d = stats.pair_noise(gains, others, stats.pooled_noise([head, cand]))
                verdict = stats.paired_verdict(gains, sigma_d, 2.9, 8)
        promoted += verdict == "promote"
        pairs += len(gains)
    return promoted / trials, pairs / trials


def test_the_paired_rule_promotes_no_noise_and_nearly_every_3_sigma_win() -> None:
    alpha = 1 - stats.normal_cdf(2.9)  # 0.19%
    null_rate, null_pairs = simulate(0.0, 20_000)
    assert null_rate <= alpha and null_pairs < 2.5  # observed 0.1% over 2.3 pairs; half stop at the first look
    small_rate, small_pairs = simulate(0.5, 4000, seed=7)
    assert small_rate <= 0.02 and small_pairs < 3.6  # observed 0.95% over 3.2 pairs (4.0 before the late futility)
    win_rate, win_pairs = simulate(3.0, 4000, seed=2)
    assert win_rate >= 0.92 and win_pairs < 6.5  # observed 94% over 6.1 pairs: pairs that share nothing
    # noise shared within a pair (as real training's is, and the synthetic task's): the pairs' own σ_d takes over
    for earlier in (0, 3):
        shared_rate, shared_pairs = simulate(0.0, 10_000, shared=0.9, earlier=earlier, seed=3)
        assert shared_rate <= alpha and shared_pairs < 2.0  # observed 0.01-0.04% over 1.80 pairs
    win_rate, cold = simulate(3.0, 2000, shared=0.9, seed=4)
    assert win_rate >= 0.99 and cold < 6.0  # observed 100% over 5.6 pairs in a fresh org
    win_rate, warm = simulate(3.0, 2000, shared=0.9, earlier=3, seed=5)
    assert win_rate >= 0.99 and warm < 2.1  # observed 100% over 2.0 pairs: the first look that may promote


def test_a_head_needs_all_of_k_runs_while_sigma_is_new_then_half() -> None:
    assert [stats.head_runs_needed(8, dof) for dof in (0, 7, 8, 100)] == [8, 8, 4, 4]
    assert [stats.head_runs_needed(k, 50) for k in (1, 2, 3, 5)] == [1, 2, 2, 3]
