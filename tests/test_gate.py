"""The gate on planted cases, through the real runner, ledger and git: no false promotion, real wins get in."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from autoorg import clock, comms, executors, experiments, gate, workspace
from autoorg.compute.slots import WANTED_POLL_S, GateHold, class_slots, lease_slot, live_tickets, org_slots
from autoorg.compute.slots import _Queue as slots_queue  # a waiter's ticket, without a waiter
from autoorg.experiments import ledger, run
from autoorg.gate.stats import after_pairs, paired_verdict, promoting_looks, promotion_bound
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.spec.org import load_org
from autoorg.testing import experiments as sup
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.experiments import TRAIN, drive_gate, set_knobs, settled, verdict
from tests.exp_support import SYNTHETIC, add_synthetic

SIGMA = 0.005


def run_exp(paths: OrgPaths, agent: str, message: str, seed: int | None = None) -> str:
    ctx = experiments.load_context(paths)
    exp = experiments.queue_experiment(ctx, agent, message, seed=seed)
    gate.run_experiment(ctx, exp)
    return exp


def head(paths: OrgPaths) -> str:
    return git(paths.repo, "rev-parse", "org/t")


def passed_screen(paths: OrgPaths, exp: str) -> bool:
    """The run was judged a candidate (the daemon's gate may already be verifying or have decided it)."""
    return verdict(paths, exp).startswith(("candidate", "verifying", "promoted", "rejected", "stale"))


def baseline_done(paths: OrgPaths) -> bool:
    ctx = experiments.load_context(paths)
    return gate.head_stats(ctx, head(paths), "cpu").n >= gate.settings(ctx.spec).baseline_repeats


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path, request: pytest.FixtureRequest) -> OrgPaths:
    param = getattr(request, "param", None) or {}
    # evaluator=False: a test of the gate's own rules plants what the protected evaluator would make moot
    add_synthetic(repo, sigma=SIGMA, evaluator=param.get("evaluator", True), budget=param.get("budget", 0.3),
                  startup=param.get("startup"))
    paths = sup.start_org(repo, tmux_socket, tmp_path, agents=2, baseline=4, repeats=param.get("repeats", 3),
                          z=param.get("z"))
    drive_gate(paths, lambda: baseline_done(paths), message="the program head's baseline")
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def test_t_quantiles_match_the_tables() -> None:
    for p, dof, table in ((0.99, 2, 6.965), (0.975, 4, 2.776), (0.99, 7, 2.998), (0.975, 10, 2.228),
                          (0.99, 30, 2.457), (0.95, 200, 1.653)):
        assert gate.t_quantile(p, dof) == pytest.approx(table, abs=2e-3)
    assert gate.t_quantile(gate.normal_cdf(2.33), 5000) == pytest.approx(2.33, abs=1e-3)


def test_the_band_shrinks_as_runs_accumulate() -> None:
    few, many = gate.Noise(0.01, 3), gate.Noise(0.01, 60)
    assert gate.band(few, 3, 4, 1.0, 2.33, 0.0) > gate.band(many, 3, 4, 1.0, 2.33, 0.0)  # type: ignore[operator]
    assert gate.band(many, 3, 4, 1.0, 2.33, 0.0) > gate.band(many, 3, 40, 1.0, 2.33, 0.0)  # type: ignore[operator]
    assert gate.band(gate.Noise(0.0, 5), 3, 4, 2.0, 2.33, 0.001) == pytest.approx(0.002)
    assert gate.band(gate.Noise(None, 0), 3, 4, 1.0, 2.33, 0.0) is None
    pooled = gate.pooled_noise([[1.0, 3.0], [10.0, 12.0, 14.0]])
    assert pooled.dof == 3 and pooled.sigma == pytest.approx(((2 + 8) / 3) ** 0.5)


# ---------------------------------------------------------------------------------------------------------------
# Planted cases


def lucky_seed(knobs: dict[str, Any], below_sigmas: float) -> int:
    """A seed whose noise draw for these knobs is below -below_sigmas·σ: what an agent fishing for a win finds."""
    spec = importlib.util.spec_from_file_location("landscape", SYNTHETIC / "landscape.py")
    assert spec and spec.loader
    land = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(land)
    for seed in range(1, 200_000):
        if land.noisy_loss(knobs, 1e6, seed, 1.0) - land.expected_loss(knobs, 1e6) < -below_sigmas:
            return seed
    raise AssertionError("no lucky seed")


HEAD_KNOBS = {"LEARNING_RATE": 0.001, "WARMUP_FRAC": 0.3, "WEIGHT_DECAY": 0.0, "DEPTH": 4, "BATCH_SIZE": 64}


@pytest.mark.parametrize(("cores", "avoid", "slots"), [({0, 1, 2, 3}, "cpu1", ["cpu0", "cpu2", "cpu3"]),
                                                       ({0, 1, 2}, "cpu1", ["cpu0", "cpu2"]),
                                                       ({0, 1}, "cpu1", ["cpu0", "cpu1"]), ({0}, "cpu0", ["cpu0"])])
def test_the_gate_runs_off_the_claimants_slot_while_two_others_are_left(
        monkeypatch: pytest.MonkeyPatch, cores: set[int], avoid: str, slots: list[str]) -> None:
    """A same-seed pair starts its two arms together; on one slot they would run in turn, twice as slow."""
    monkeypatch.setattr("autoorg.compute.slots.os.sched_getaffinity", lambda _pid: cores)
    assert [s.name for s in class_slots(load_org("2xcpu", task="synthetic"), "cpu", avoid)] == slots


@pytest.mark.parametrize("org", [{"z": 3.5}], indirect=True)
def test_seed_fishing_and_no_effect_edits_are_never_promoted(org: OrgPaths) -> None:
    before = head(org)
    seed = lucky_seed(HEAD_KNOBS, 3.5)
    same = [run_exp(org, "alice", "just another seed", seed=s) for s in (seed, seed + 1)]
    assert [verdict(org, e) for e in same] == ["same as head", "same as head"]
    stats = gate.head_stats(experiments.load_context(org), before, "cpu")
    assert stats.n == 4  # runs on seeds an agent chose (perhaps lucky ones) never count towards the mean
    train = org.worktree("bob") / TRAIN
    train.write_text(train.read_text() + "# a comment changes the tree, not the result\n")
    fished = run_exp(org, "bob", "tidy comment", seed=seed)
    assert passed_screen(org, fished)
    drive_gate(org, lambda: settled(org, fished), message="the no-effect candidate to be decided")
    assert verdict(org, fished).startswith("rejected: not confirmed")
    assert head(org) == before and ledger.promotions(org) == []
    ver = ledger.verifications(org, exp=fished)[0]
    runs = [ledger.get_experiment(org, e) for e in ver["runs"]]
    assert len(runs) in (2, 4, 6) and {r["seed"] for r in runs}.isdisjoint({seed})
    heads, cands = runs[0::2], runs[1::2]  # same-seed pairs: the head's run, then the candidate's
    assert {r["commit_sha"] for r in heads} == {before} and before not in {r["commit_sha"] for r in cands}
    assert [r["seed"] for r in heads] == [r["seed"] for r in cands] and len({r["seed"] for r in heads}) == len(heads)
    notes = [m for m in comms.read_inbox(org, "bob") if m.kind == "result" and m.exp == fished]
    assert notes and "rejected by the gate" in notes[0].body


def test_training_past_the_budget_is_never_promoted(org: OrgPaths) -> None:
    train = org.worktree("alice") / TRAIN
    train.write_text(train.read_text().replace("0.9 * args.budget", "1.6 * args.budget"))
    exp = run_exp(org, "alice", "train a bit longer")
    assert verdict(org, exp).startswith("over budget")  # its own report; the evaluator scored what the budget buys
    drive_gate(org, lambda: True)
    assert ledger.promotions(org) == [] and verdict(org, exp).startswith("over budget")


def test_a_candidate_touching_a_protected_file_is_rejected_by_the_gate(org: OrgPaths) -> None:
    """Defence in depth: even a commit that reached the ledger without `exp run`'s check never runs."""
    worktree = org.worktree("alice")
    landscape = worktree / "examples/synthetic/landscape.py"
    landscape.write_text(landscape.read_text().replace("loss = 1.0\n", "loss = 0.5\n"))
    set_knobs(worktree, LEARNING_RATE=0.006)  # a real gain beside it (the doctored copy itself is never run)
    git(worktree, "commit", "-qam", "easier landscape")
    ctx = experiments.load_context(org)
    commit, base = git(worktree, "rev-parse", "HEAD"), head(org)
    exp = experiments.queue_run(ctx, kind="exp", agent="alice", commit=commit, head=base, description="cheat",
                           seed=5, budget=ctx.task.budget["cpu"], slot_class="cpu")
    gate.run_experiment(ctx, exp)  # the runner checks the exported tree against the org's manifest first
    assert verdict(org, exp) == ("void: protected files differ from the org's manifest: "
                                 "examples/synthetic/landscape.py")
    assert ledger.get_experiment(org, exp)["metric"] is None
    drive_gate(org, lambda: settled(org, exp), message="the cheat to be decided")
    assert head(org) == base


def test_a_real_win_is_promoted_and_everyone_is_told(org: OrgPaths) -> None:
    old = head(org)
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    exp = run_exp(org, "alice", "lr 0.006")
    assert passed_screen(org, exp)
    drive_gate(org, lambda: settled(org, exp), message="the win to be decided")
    assert verdict(org, exp) == "promoted"
    new = head(org)
    assert git(org.repo, "rev-parse", f"{new}^") == old  # a fast-forward by one squashed commit
    assert workspace.changed_paths(org.repo, old, new) == [TRAIN]
    assert "LEARNING_RATE = 0.006" in git(org.repo, "show", f"{new}:{TRAIN}")
    assert git(org.repo, "log", "-1", "--format=%an", new) == "alice"
    (promo,) = ledger.promotions(org)
    assert promo["exp"] == exp and promo["old_head"] == old and promo["new_head"] == new and promo["delta"] < 0
    for agent in ("alice", "bob"):
        system = [m for m in comms.read_inbox(org, agent) if m.kind == "system" and m.exp == exp]
        assert system and "New best on org/t" in system[0].body and "git merge org/t" in system[0].body
    board = comms.read_board(org)
    assert f"promoted {exp} by alice" in board and "## Current best" in board
    out = json.loads(run_cli("results", "--json", cwd=org.repo, env={"AUTOORG_HOME": str(org.home)}).stdout)
    assert out["program_head"] == new and out["promotions"][0]["exp"] == exp
    assert [r["verdict"] for r in out["experiments"]] == ["promoted"]
    # σ is known now, so the new head needs half of K runs of its own, and its candidate's run and its arm of the
    # pairs already count: the gate tops up only what is missing
    ctx = experiments.load_context(org)
    k = gate.settings(ctx.spec).baseline_repeats
    assert gate.noise(org, "cpu").dof >= k and gate.baseline_need(ctx, "cpu") == k // 2
    drive_gate(org, lambda: any(b["head"] == new for b in ledger.baselines(org)), message="the new head's baseline")
    topped = [r for r in ledger.experiments(org, kinds=("baseline",)) if r["commit_sha"] == new]
    own = gate.head_stats(ctx, new, "cpu").n - len(topped)
    assert own >= 3 and len(topped) == max(0, k // 2 - own)


def test_two_independent_wins_both_get_in_the_second_rebased_on_the_first(org: OrgPaths) -> None:
    base = head(org)
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    set_knobs(org.worktree("bob"), BATCH_SIZE=128, WARMUP_FRAC=0.05)
    a = run_exp(org, "alice", "lr 0.006")
    b = run_exp(org, "bob", "batch 128, warmup 0.05")
    assert passed_screen(org, a) and passed_screen(org, b)
    drive_gate(org, lambda: settled(org, a, b), timeout=90, message="both wins to be decided")
    assert verdict(org, a) == verdict(org, b) == "promoted"
    first, second = ledger.promotions(org)
    assert first["old_head"] == base and second["old_head"] == first["new_head"]
    final = git(org.repo, "show", f"org/t:{TRAIN}")
    assert "LEARNING_RATE = 0.006" in final and "BATCH_SIZE = 128" in final and "WARMUP_FRAC = 0.05" in final
    assert second["metric"] < first["metric"]
    later = ledger.verifications(org, exp=second["exp"])[-1]
    assert later["head"] == first["new_head"]  # verified on top of the first win


def test_a_conflicting_second_win_is_stale_and_its_agent_is_told(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    set_knobs(org.worktree("bob"), LEARNING_RATE=0.005)
    a = run_exp(org, "alice", "lr 0.006")
    b = run_exp(org, "bob", "lr 0.005")
    drive_gate(org, lambda: settled(org, a, b), timeout=90, message="both candidates to be decided")
    verdicts = sorted([verdict(org, a), verdict(org, b)])
    assert verdicts[0] == "promoted" and verdicts[1].startswith("stale: conflicts with the program head")
    loser = b if verdict(org, b).startswith("stale") else a
    agent = "bob" if loser == b else "alice"
    assert any(m.exp == loser and "stale" in m.body for m in comms.read_inbox(org, agent))


def test_the_gate_lock_means_one_gate_at_a_time(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    exp = run_exp(org, "alice", "lr 0.006")
    with open(org.locks / "gate.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        before = ledger.verifications(org)
        assert gate.step(org, log=lambda _: None) is False  # busy: returns at once, does nothing
        assert ledger.verifications(org) == before
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(gate.step(org, log=lambda _: None)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    drive_gate(org, lambda: settled(org, exp), message="the candidate to be decided")
    assert len(ledger.verifications(org, exp=exp)) == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a same-seed pair and a waiting run need two slots")
# z 2: alice's win (~0.06, 12σ) clears the first promoting look's bar (~0.02; at z 3 and σ from 3 dof, 0.058)
# by its claim and by its first pair's gain, so its verification neither lets bob's waiting run go first before its
# first pair (runs_first) nor after it (YIELD_FROM_PAIRS): what this test watches is the slots kept for the gate.
@pytest.mark.parametrize("org", [{"budget": 4, "z": 2.0}], indirect=True)
def test_a_pairs_arms_start_together_and_its_slots_go_to_the_next_look(org: OrgPaths) -> None:
    """A pair's arms start together even when their slots free at different times, and between a look landing
    and the gate queuing the next the slots are kept for the gate: an agent's run that was waiting does not take
    one (else every look of a verification would wait a whole run)."""
    ctx = experiments.load_context(org)

    def start_run(agent: str, message: str) -> tuple[str, threading.Thread]:
        exp = experiments.queue_experiment(ctx, agent, message)
        thread = threading.Thread(target=gate.run_experiment, args=(ctx, exp))
        thread.start()
        return exp, thread

    def started(exp: str) -> float:
        return clock.parse_iso(ledger.get_experiment(org, exp)["started"]).timestamp()

    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    win, alice = start_run("alice", "lr 0.006")  # a candidate: its run steps the gate, which starts pair 1
    retry_until(lambda: verdict(org, win) == "running", timeout=20, message="alice's run to start")
    time.sleep(3.5)
    busy, bob = start_run("bob", "takes the other slot")  # ends ~3.5 s after alice's: pair 1's second slot
    retry_until(lambda: verdict(org, busy) == "running", timeout=20, message="bob's run to start")
    waiting, queued = start_run("bob", "waits for a slot")  # both slots busy: it waits, through pair 1
    retry_until(lambda: live_tickets(org.locks / "queue-cpu"), timeout=20, message="bob's run to wait for a slot")
    alice.join(timeout=60)
    bob.join(timeout=60)
    assert passed_screen(org, win)
    retry_until(lambda: ledger.verifications(org, exp=win), timeout=20, message="the verification to start")
    runs = ledger.verifications(org, exp=win)[0]["runs"]
    retry_until(lambda: all(verdict(org, e) != "queued" for e in runs[:2]), timeout=30, message="pair 1 to start")
    assert abs(started(runs[0]) - started(runs[1])) < 1.0, "pair 1's arms did not start together"
    assert started(runs[0]) > started(busy) + 2.0  # the arm that had a slot first waited for the other's
    assert verdict(org, waiting) == "queued"  # the gate's runs come first
    drive_gate(org, lambda: settled(org, win), message="the win to be decided")
    queued.join(timeout=60)
    runs = ledger.verifications(org, exp=win)[0]["runs"]
    assert len(runs) >= 4 and verdict(org, win) == "promoted"  # one pair never promotes: a second look ran
    assert started(waiting) > max(started(e) for e in runs[2:4]), "bob's run took a slot the next look waited for"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="two pairs' arms on exactly two slots")
def test_a_look_of_two_pairs_on_two_slots_runs_each_pair_whole(org: OrgPaths) -> None:
    """An arm that has a slot waits for its pair's other arm; when an arm of an older pair holds the other slot
    (each would keep the slot the other's partner needs), the younger arm gives its slot back, and the older one
    keeps waiting: the pairs run one after the other, each pair's arms together."""
    ctx = experiments.load_context(org)
    row = ledger.get_experiment(org, run_exp(org, "bob", "the head again"))
    # two pairs' rows, no workers: pair 1's head arm has a slot; pair 2's head arm, with the other, gives way
    arms = [experiments.queue_run(ctx, kind="verify", agent="gate", commit=head(org), head=head(org),
                                  description=f"arm {i}", seed=seed, budget=0.3, slot_class="cpu", candidate=row["exp"])
            for i, seed in enumerate((101, 101, 102, 102))]
    for exp in arms:
        (org.runs / exp).mkdir(parents=True, exist_ok=True)
    (org.runs / arms[0] / "leased").touch()
    assert run._wait_for_other_arm(org, ledger.get_experiment(org, arms[2]), None) is True
    # the older pair's arm, with a younger pair's arm on the other slot, does not give way: it waits for its partner
    (org.runs / arms[2] / "leased").touch()
    gave_way: list[bool] = []
    waiter = threading.Thread(target=lambda: gave_way.append(
        run._wait_for_other_arm(org, ledger.get_experiment(org, arms[0]), None)))
    waiter.start()
    waiter.join(timeout=1.5)
    assert waiter.is_alive(), "the older pair's arm stopped waiting for its partner"
    (org.runs / arms[1] / "leased").touch()
    waiter.join(timeout=20)
    assert not waiter.is_alive() and gave_way == [False]
    for exp in arms:
        ledger.update_experiment(org, exp, verdict="cancelled: test")
    # and through the real runner: a look of two pairs at once on the two slots
    runs = gate.verify.queue_pairs(ctx, row, head(org), head(org), 2, first=1, of=2)
    retry_until(lambda: all(verdict(org, e) not in ledger.UNFINISHED for e in runs), timeout=90,
                message="both pairs to run")
    assert [verdict(org, e) for e in runs] == ["ok"] * 4
    started = {e: clock.parse_iso(ledger.get_experiment(org, e)["started"]).timestamp() for e in runs}
    pairs = [sorted((e for e in runs if ledger.get_experiment(org, e)["seed"] == seed), key=started.get)
             for seed in dict.fromkeys(ledger.get_experiment(org, e)["seed"] for e in runs)]
    assert all(abs(started[a] - started[b]) < 1.0 for a, b in pairs), f"a pair's arms started apart: {started}"


@pytest.mark.parametrize("org", [{"z": 3.5, "repeats": 6}], indirect=True)
def test_a_futile_verification_stops_at_its_first_look(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0003)  # clearly worse
    exp = run_exp(org, "alice", "lr 0.0003")
    ledger.update_experiment(org, exp, verdict="candidate")  # as if one run had been lucky
    drive_gate(org, lambda: settled(org, exp), message="the futile candidate to be decided")
    assert verdict(org, exp).startswith("rejected: not confirmed") and "over 1 same-seed pair:" in verdict(org, exp)
    runs = [ledger.get_experiment(org, e) for e in ledger.verifications(org, exp=exp)[0]["runs"]]
    assert len(runs) == 2 and all(r["verdict"] == "ok" for r in runs)  # one look of 1 pair, not 6


def hold_all_slots_but_one(org: OrgPaths) -> contextlib.ExitStack:
    """Hold every slot of the org's but its first, as runs would, until the stack is closed: an agent's run gets
    that one, and a verification's pair (which starts both arms together) cannot start."""
    stack = contextlib.ExitStack()
    for slot in org_slots(experiments.load_context(org).spec)[1:]:
        stack.enter_context(lease_slot(org, [slot], holder={"exp": "test"}, wait_s=30))
    return stack


def screened_while_a_verification_waits(org: OrgPaths, agent: str, message: str,
                                        held: contextlib.ExitStack | None = None) -> str:
    """Run `agent`'s experiment while the verification in flight cannot decide its look (the test holds the gate's
    lock until the run is screened); returns its id once the gate took the lock again. `held` (the slots the test
    holds so that the verification's first pair cannot land before that) is let go once the lock is held."""
    exps: list[str] = []
    with gate.gate_lock(org, wait_s=60) as locked:
        assert locked
        if held is not None:
            held.close()
        worker = threading.Thread(target=lambda: exps.append(run_exp(org, agent, message)))
        worker.start()
        retry_until(lambda: ledger.experiments(org, agent=agent, kinds=("exp",), verdict="candidate"), timeout=90,
                    message=f"{agent}'s run to be screened")
    worker.join(timeout=90)
    assert exps
    return exps[0]


@pytest.mark.parametrize("org", [{"z": 12.0}], indirect=True)  # nothing promotes: each runs to its last look
def test_a_verification_is_set_aside_for_a_far_bigger_claim_and_goes_on_from_its_look(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0015)  # a real gain of ~5σ
    small = run_exp(org, "alice", "lr 0.0015")
    assert ledger.verifications(org, exp=small), verdict(org, small)  # its hand-over started the verification
    set_knobs(org.worktree("bob"), LEARNING_RATE=0.006, WARMUP_FRAC=0.05)  # ~17σ: over 2x the claim in bands
    big = screened_while_a_verification_waits(org, "bob", "lr 0.006, warmup 0.05")
    drive_gate(org, lambda: settled(org, small, big), timeout=120, message="both to be decided")
    (first,) = ledger.verifications(org, exp=small)  # one verification, set aside and gone on with
    (second,) = ledger.verifications(org, exp=big)
    assert first["status"] == second["status"] == "rejected"
    assert "over 3 same-seed pairs" in first["why"] and len(first["runs"]) == 6 and len(second["runs"]) == 6
    # set aside at a look (its first, or its second where the bigger claim was not yet 2x the smaller one's
    # evidence): the big one's runs all come between the pairs before it and the pairs after
    number = lambda exp: int(exp.lstrip("e"))  # noqa: E731
    before = [e for e in first["runs"] if number(e) < min(map(number, second["runs"]))]
    order = f"small {first['runs']}, big {second['runs']}"
    assert 2 <= len(before) < len(first["runs"]) and first["runs"][:len(before)] == before, order
    assert max(map(number, second["runs"])) < min(map(number, first["runs"][len(before):])), order
    assert all(ledger.get_experiment(org, e)["verdict"] == "ok" for e in first["runs"] + second["runs"])


def test_a_verification_whose_look_is_in_flight_is_set_aside_at_once_and_keeps_its_started_pairs(
        org: OrgPaths) -> None:
    """A bigger claim screened while a look's pairs wait for slots does not wait for them: the pairs that have not
    started are cancelled (nothing of them was seen), a started one stands, and the verification goes on to the
    same look once that pair has landed."""
    ctx = experiments.load_context(org)
    h, budget = head(org), ctx.task.budget["cpu"]
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0015)
    git(org.worktree("alice"), "commit", "-qam", "lr 0.0015")
    change = git(org.worktree("alice"), "rev-parse", "HEAD")
    logs: list[str] = []

    def screened(agent: str, metric: float) -> str:  # an agent's run the gate screened a candidate
        exp = experiments.queue_run(ctx, kind="exp", agent=agent, commit=change, head=h, description=agent, seed=1,
                                    budget=budget, slot_class="cpu")
        ref = gate.head_stats(ctx, h, "cpu").mean
        ledger.update_experiment(org, exp, verdict="candidate", metric=metric, ref_mean=ref, band=0.01)
        return exp

    def pair(seed: int) -> list[str]:
        return [experiments.queue_run(ctx, kind="verify", agent="gate", commit=sha, head=h, description="pair",
                                      seed=seed, budget=budget, slot_class="cpu", candidate=small)
                for sha in (h, change)]

    with gate.gate_lock(org, wait_s=30) as held:  # the daemon's gate steps wait: this test makes them
        assert held
        ref = gate.head_stats(ctx, h, "cpu").mean
        small = screened("alice", ref - 0.04)  # a claim of 4 bands
        done, started, waiting = pair(9001), pair(9002), pair(9003)
        for exp, value in zip(done, (ref, ref - 0.03), strict=True):
            ledger.update_experiment(org, exp, verdict="ok", metric=value, finished=clock.now_iso())
        ledger.update_experiment(org, started[0], verdict="running")  # its head arm is running
        (org.runs / waiting[0]).mkdir(parents=True, exist_ok=True)
        (org.runs / waiting[0] / "leased").touch()  # an arm with a slot, waiting for its other arm: not started
        ledger.add_verification(org, exp=small, head=h, commit_sha=change, runs=[*done, *started, *waiting],
                                status="running")
        ledger.update_experiment(org, small, verdict="verifying")
        decide = lambda: gate.verify.decide(ctx, ledger.verifications(org, exp=small)[0], logs.append)  # noqa: E731
        assert decide() is False  # nothing outranks it: its look goes on
        assert [verdict(org, e) for e in started + waiting] == ["running", "queued", "queued", "queued"]

        big = screened("bob", ref - 0.10)  # 10 bands: over 2x its 3 (its pair's gain) and its claim of 4
        assert decide() is True
        (ver,) = ledger.verifications(org, exp=small)
        assert ver["status"] == "paused" and ver["runs"] == [*done, *started], ver
        assert [verdict(org, e) for e in waiting] == [f"cancelled: set aside for {big}"] * 2
        assert [verdict(org, e) for e in started] == ["running", "queued"]
        assert verdict(org, small) == "candidate" and "set aside after 1 pairs" in logs[-1]
        # it goes on (to the same look) only once the pair that was starting has landed
        resumable = lambda: gate.verify._resumable(ctx, ledger.get_experiment(org, small))  # noqa: E731
        assert not resumable()
        for exp in started:
            ledger.update_experiment(org, exp, verdict="ok", metric=ref, finished=clock.now_iso())
        assert resumable()
        assert gate.verify.next_look(2, gate.settings(ctx.spec).repeats) == 1  # the look of 3 pairs, as before


def committed(org: OrgPaths, changes: dict[str, dict[str, float]]) -> dict[str, str]:
    """Commit each agent's knob changes in its worktree; returns each agent's commit."""
    commits = {}
    for agent, knobs in changes.items():
        set_knobs(org.worktree(agent), **knobs)
        git(org.worktree(agent), "commit", "-qam", agent)
        commits[agent] = git(org.worktree(agent), "rev-parse", "HEAD")
    return commits


def planted_candidate(ctx: experiments.OrgContext, agent: str, commit: str, ref: float, claim: float,
                      band: float = 0.01) -> str:
    """A run of `commit` recorded as screened: a candidate claiming `claim` over the head's mean `ref`."""
    exp = experiments.queue_run(ctx, kind="exp", agent=agent, commit=commit, head=head(ctx.paths), description=agent,
                                seed=1, budget=ctx.task.budget["cpu"], slot_class="cpu")
    ledger.update_experiment(ctx.paths, exp, verdict="candidate", metric=ref - claim, ref_mean=ref, band=band)
    return exp


@contextlib.contextmanager
def gate_held(ctx: experiments.OrgContext) -> Iterator[float]:
    """The gate's lock, so the daemon's gate steps wait (the test makes them), and the program head's mean."""
    with gate.gate_lock(ctx.paths, wait_s=30) as held:
        assert held
        ref = gate.head_stats(ctx, head(ctx.paths), "cpu").mean
        assert ref is not None
        yield ref


def test_the_gate_starts_the_rival_a_verification_was_set_aside_for_not_that_verification_again(
        org: OrgPaths) -> None:
    """A verification set aside for a rival whose claim is smaller than its own (its pairs' gains were not): the gate
    next starts the rival's verification. Choosing by claims alone resumed the one set aside, which was set aside
    again at once, some 300 times a minute (benchmarks/first_promotion.py)."""
    ctx = experiments.load_context(org)
    h, budget = head(org), ctx.task.budget["cpu"]
    commits = committed(org, {"alice": {"LEARNING_RATE": 0.0015}, "bob": {"WARMUP_FRAC": 0.15}})
    logs: list[str] = []
    with gate_held(ctx) as ref:
        small = planted_candidate(ctx, "alice", commits["alice"], ref, 0.04)  # 4 bands; its 2 pairs gained 1
        arms = [experiments.queue_run(ctx, kind="verify", agent="gate", commit=sha, head=h, description="pair",
                                      seed=seed, budget=budget, slot_class="cpu", candidate=small)
                for seed in (9001, 9002) for sha in (h, commits["alice"])]
        for exp, value in zip(arms, (ref, ref - 0.01, ref, ref - 0.01), strict=True):
            ledger.update_experiment(org, exp, verdict="ok", metric=value, finished=clock.now_iso())
        ledger.add_verification(org, exp=small, head=h, commit_sha=commits["alice"], runs=arms, status="paused",
                                why="set aside after 2 pairs")
        big = planted_candidate(ctx, "bob", commits["bob"], ref, 0.03)  # under alice's claim, over 2x her pairs' gain
        assert gate.verify.outranking(ctx, ledger.get_experiment(org, small), [0.01, 0.01])["exp"] == big
        assert gate.verify.advance_verification(ctx, logs.append) is True
        assert [v["status"] for v in ledger.verifications(org, exp=small)] == ["paused"]
        (started,) = ledger.verifications(org, exp=big)
        assert started["status"] == "running", logs
        executors.executor_for(ctx.spec).cancel_runs(org, started["runs"], "cancelled: test")


def test_claims_screened_with_different_bands_are_weighed_in_one_unit(org: OrgPaths) -> None:
    """Each candidate's band is the one it was screened with: a band from the first 4 baselines, whose σ came out
    6 times too small (3 dof), made a 0.02 claim weigh 20 bands, over three times a later 0.12 claim's 6, so the
    0.12 win waited behind all the small one's pairs (clean-clone CI). The gate weighs both in σ as the org knows
    it now: the bigger gain is verified first, and a verification whose pair gained 0.02 is set aside for it."""
    ctx = experiments.load_context(org)
    commits = committed(org, {"alice": {"WARMUP_FRAC": 0.15}, "bob": {"LEARNING_RATE": 0.006}})
    logs: list[str] = []
    with gate_held(ctx) as ref:
        small = planted_candidate(ctx, "alice", commits["alice"], ref, 0.02, band=0.001)  # 20 of its own bands
        big = planted_candidate(ctx, "bob", commits["bob"], ref, 0.12, band=0.02)  # 6 of its own
        standing = gate.verify.standings(ctx)
        assert standing(ledger.get_experiment(org, big)) == pytest.approx(
            6 * standing(ledger.get_experiment(org, small)))
        assert gate.verify.outranking(ctx, ledger.get_experiment(org, small), [0.02])["exp"] == big
        assert gate.verify.outranking(ctx, ledger.get_experiment(org, big), [0.12]) is None
        assert gate.verify.advance_verification(ctx, logs.append) is True
        (started,) = ledger.verifications(org)
        assert started["exp"] == big and started["status"] == "running", logs
        executors.executor_for(ctx.spec).cancel_runs(org, started["runs"], "cancelled: test")


@pytest.mark.parametrize("org, pairs, gains, yields", [({"repeats": 3}, 2, "clear the next bar", False),
                                                        ({"repeats": 3}, 2, "fall short of it", True),
                                                        ({"repeats": 8}, 4, "clear the next bar", True)],
                         indirect=["org"], ids=["2 of 3 pairs, gains clear the next bar", "2 of 3 pairs, fall short",
                                                "4 of 8 pairs, gains clear the next bar"])
def test_a_verification_yields_a_round_unless_its_gains_clear_a_next_looks_bar_at_most_two_pairs_away(
        org: OrgPaths, monkeypatch: pytest.MonkeyPatch, pairs: int, gains: str, yields: bool) -> None:
    """Undecided at a look with agents' runs waiting: a verification whose pairs so far would clear the next look's
    bar (σ_d's estimates with the dof that look's pairs bring) queues that look at once when it is at most
    DUE_WITHIN_PAIRS pairs away; a weaker one, or one whose next look is further (4 more pairs of 8: four rounds of both slots), lets the waiting
    runs start first. Real ledger and decide(); only the waiting agents' runs are named by hand (waiting_for_slots,
    which reads the clock, has a test of its own)."""
    verify = importlib.import_module("autoorg.gate.verify")
    monkeypatch.setattr(verify, "waiting_for_slots", lambda _ctx, _cls, _rows: ["e0999"])
    ctx = experiments.load_context(org)
    h, budget, st = head(org), ctx.task.budget["cpu"], gate.settings(ctx.spec)
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0015)
    git(org.worktree("alice"), "commit", "-qam", "lr 0.0015")
    change = git(org.worktree("alice"), "rev-parse", "HEAD")
    logs: list[str] = []
    signs = [1 if i % 2 == 0 else -1 for i in range(pairs)]
    with gate.gate_lock(org, wait_s=30) as held:  # the daemon's gate steps wait: this test makes them
        assert held
        ref, sigma = gate.head_stats(ctx, h, "cpu").mean, gate.noise(org, "cpu").sigma
        assert ref is not None and sigma is not None
        cand = experiments.queue_run(ctx, kind="exp", agent="alice", commit=change, head=h, description="lr",
                                     seed=1, budget=budget, slot_class="cpu")
        arms = [experiments.queue_run(ctx, kind="verify", agent="gate", commit=sha, head=h, description="pair",
                                      seed=9001 + i, budget=budget, slot_class="cpu", candidate=cand)
                for i in range(pairs) for sha in (h, change)]
        ledger.add_verification(org, exp=cand, head=h, commit_sha=change, runs=arms, status="running")
        [ver] = ledger.verifications(org, exp=cand)

        def plant(gain: float) -> None:  # the candidate's runs at -gain ± 0.7σ, the head's arms at ±σ: σ stays put
            ledger.update_experiment(org, cand, verdict="verifying", metric=ref - gain, ref_mean=ref, band=0.01)
            for i, sign in enumerate(signs):
                ledger.update_experiment(org, arms[2 * i], verdict="ok", metric=ref + sign * sigma,
                                         finished=clock.now_iso())
                ledger.update_experiment(org, arms[2 * i + 1], verdict="ok", metric=ref - gain - sign * 0.7 * sigma,
                                         finished=clock.now_iso())

        def pair_gains(gain: float) -> list[float]:
            return [gain + sign * 1.7 * sigma for sign in signs]

        def bar(n: int, gain: float) -> float:  # the bar n pairs must clear: at this look, or projected to the next
            estimates = verify.pair_noise_of(ctx, "cpu", pair_gains(gain), leave_out=ver["id"])
            found = promotion_bound(after_pairs(estimates, pairs, n - pairs), n, st.z, promoting_looks(st.repeats))
            assert found is not None
            return float(found[0])

        plant(0.0)
        next_n = pairs + verify.next_look(pairs, st.repeats)
        gain = (bar(pairs, 0.0) + bar(next_n, 0.0)) / 2 if gains == "clear the next bar" else 0.7 * bar(next_n, 0.0)
        plant(gain)
        assert paired_verdict(pair_gains(gain), verify.pair_noise_of(ctx, "cpu", pair_gains(gain), leave_out=ver["id"]),
                              st.z, st.repeats) == "continue"  # undecided at this look either way
        assert (bar(next_n, gain) < gain) == (gains == "clear the next bar")
        assert verify.decide(ctx, ver, logs.append) is True
        [after] = ledger.verifications(org, exp=cand)
        if not yields:
            assert len(after["runs"]) == 2 * next_n and after["why"] == "", after
            assert "would clear that look's bar" in logs[-1]
        else:
            assert after["runs"] == arms and "the agents' runs queued before its look start first (e0999)" in \
                after["why"], after
        executors.executor_for(ctx.spec).cancel_runs(org, after["runs"][2 * pairs:], "cancelled: test")


@pytest.mark.parametrize("claim", ["under the first promoting bar", "over it as its pairs leave sigma",
                                   "over it"])
def test_a_fresh_verification_of_a_small_claim_lets_the_runs_waiting_when_it_landed_start_first(
        org: OrgPaths, claim: str) -> None:
    """A candidate whose claim would not clear the bar of the first look that may promote (σ_d's estimates with the
    dof that look's pairs bring) is verified once the agents' runs that were waiting for a slot when it landed have
    started; a bigger claim is verified at once, also one under the bar of σ_d's estimates as they stand (a fresh
    org's σ has the few dof of its baselines). Real ledger, real waiting_for_slots and advance_verification."""
    verify = importlib.import_module("autoorg.gate.verify")
    ctx = experiments.load_context(org)
    h, st = head(org), gate.settings(ctx.spec)
    commits = committed(org, {"alice": {"LEARNING_RATE": 0.0015}, "bob": {"WARMUP_FRAC": 0.15}})
    logs: list[str] = []
    with gate_held(ctx) as ref:
        first, estimates = verify.looks(st.repeats)[1], verify.pair_noise_of(ctx, "cpu", [], leave_out=-1)
        bar = promotion_bound(after_pairs(estimates, 0, first), first, st.z, promoting_looks(st.repeats))
        standing = promotion_bound(estimates, first, st.z, promoting_looks(st.repeats))
        assert bar is not None and standing is not None and st.floor * abs(ref) < bar[0] < standing[0] / 1.5
        waiting = experiments.queue_run(ctx, kind="exp", agent="bob", commit=commits["bob"], head=h,
                                        description="bob", seed=2, budget=ctx.task.budget["cpu"], slot_class="cpu")
        time.sleep(0.01)
        cand = planted_candidate(ctx, "alice", commits["alice"], ref, (0.5 if claim.startswith("under") else 1.5)
                                 * bar[0] if claim != "over it" else 1.5 * standing[0])
        ledger.update_experiment(org, cand, finished=clock.now_iso())
        if claim.startswith("under"):
            assert verify.runs_first(ctx, ledger.get_experiment(org, cand)) == [waiting]
            assert verify.advance_verification(ctx, logs.append) is False and not ledger.verifications(org)
            ledger.update_experiment(org, waiting, verdict="running", started=clock.now_iso())  # bob's run starts
        assert verify.advance_verification(ctx, logs.append) is True
        (started,) = ledger.verifications(org)
        assert started["exp"] == cand and started["status"] == "running", logs
        executors.executor_for(ctx.spec).cancel_runs(org, started["runs"], "cancelled: test")
        ledger.update_experiment(org, waiting, verdict="cancelled: test")


def test_a_first_round_candidate_lets_the_runs_waiting_when_its_heads_baselines_landed_start_first(
        org: OrgPaths) -> None:
    """A run that landed before its head's baselines (an org's first round) is screened when they land; the runs
    waiting for a slot then start before its verification, though its own landing is longer ago than their rounds
    take. Counted from its landing, its pairs went before the runs queued at `up`."""
    verify = importlib.import_module("autoorg.gate.verify")
    ctx = experiments.load_context(org)
    h, st = head(org), gate.settings(ctx.spec)
    commits = committed(org, {"alice": {"LEARNING_RATE": 0.0015}, "bob": {"WARMUP_FRAC": 0.15}})
    with gate_held(ctx) as ref:
        first, estimates = verify.looks(st.repeats)[1], verify.pair_noise_of(ctx, "cpu", [], leave_out=-1)
        bar = promotion_bound(after_pairs(estimates, 0, first), first, st.z, promoting_looks(st.repeats))
        assert bar is not None
        cand = planted_candidate(ctx, "alice", commits["alice"], ref, 0.5 * bar[0])
        long_ago = clock.iso_of_epoch(time.time() - 600)  # ten rounds' length ago
        ledger.update_experiment(org, cand, finished=long_ago, ref_head=h)
        waiting = experiments.queue_run(ctx, kind="exp", agent="bob", commit=commits["bob"], head=h,
                                        description="bob", seed=2, budget=ctx.task.budget["cpu"], slot_class="cpu")
        assert verify.runs_first(ctx, ledger.get_experiment(org, cand)) == []  # its head's baselines long landed
        time.sleep(0.01)
        last = experiments.queue_run(ctx, kind="baseline", agent="gate", commit=h, head=h, description="baseline",
                                     seed=3, budget=ctx.task.budget["cpu"], slot_class="cpu")
        ledger.update_experiment(org, last, verdict="ok", metric=ref, finished=clock.now_iso())  # it lands now
        assert verify.runs_first(ctx, ledger.get_experiment(org, cand)) == [waiting]
        for exp in (cand, waiting, last):
            ledger.update_experiment(org, exp, verdict="cancelled: test")


def test_a_landed_gate_run_keeps_its_slot_only_for_gate_runs_that_started_with_it(org: OrgPaths) -> None:
    """hand_over waits for the other arm of its pair (or a baseline started beside it), not for a gate run that
    started a run's length later: that one lands a run's length later, and the slot would sit idle meanwhile."""
    ctx = experiments.load_context(org)
    h, now = head(org), time.time()
    with gate.gate_lock(org, wait_s=30) as held:  # the daemon's gate steps wait (they would sweep these rows)
        assert held
        rows = [experiments.queue_run(ctx, kind="baseline", agent="gate", commit=h, head=h, description="b", seed=s,
                                      budget=ctx.task.budget["cpu"], slot_class="cpu") for s in (71, 72, 73)]
        for exp, ago in zip(rows, (70.0, 66.0, 5.0), strict=True):
            ledger.update_experiment(org, exp, verdict="running", started=clock.iso_of_epoch(now - ago))
        landed = {**ledger.get_experiment(org, rows[0]), "verdict": "ok"}
        ledger.update_experiment(org, rows[0], verdict="ok")
        assert gate.verify._landing_soon(ctx, landed) == [rows[1]]  # started 4 s after it; not 65 s after
        for exp in rows[1:]:
            ledger.update_experiment(org, exp, verdict="cancelled: test")


def test_a_new_candidates_slot_is_kept_until_its_own_pairs_workers_are_in_line(org: OrgPaths) -> None:
    """The hold on a new candidate's slot lasts until the runs the gate queued are in the gate's line, each by its
    worker's pid: a ticket left by a run the same step cancelled (its worker has not left the line yet) does not
    stand in for one, else an agent's waiting run takes the slot as that ticket goes."""
    ctx = experiments.load_context(org)
    h = head(org)
    slot = org_slots(ctx.spec)[0]
    with gate.gate_lock(org, wait_s=30) as held:  # the daemon's gate steps wait (they would sweep these rows)
        assert held
        exp = experiments.queue_run(ctx, kind="baseline", agent="gate", commit=h, head=h, description="b", seed=81,
                                    budget=ctx.task.budget["cpu"], slot_class="cpu")
        ledger.update_experiment(org, exp, pid=os.getpid() + 1)  # its worker: started, not yet in line
        hold = GateHold(org, slot)
        stale = slots_queue(org, "gate-queue-cpu", ["cpu0", "cpu1"])  # a cancelled run's, still in line
        try:
            assert hold.waiting_pids() == {os.getpid()}
            assert gate.verify.lined_up(ctx, "cpu", hold, 0.3) is False
            ledger.update_experiment(org, exp, pid=os.getpid())  # now the waiter is its worker
            assert gate.verify.lined_up(ctx, "cpu", hold, 0.0) is True
            ledger.update_experiment(org, exp, pid=None)
            (org.runs / exp).mkdir(parents=True, exist_ok=True)
            (org.runs / exp / "leased").touch()  # or it has a slot already (a pair's arm waiting for the other's)
            assert gate.verify.lined_up(ctx, "cpu", hold, 0.0) is True
        finally:
            stale.leave()
            hold.release()
            ledger.update_experiment(org, exp, verdict="cancelled: test")


@pytest.mark.parametrize("first", [False, True], ids=["a gate run's hold", "an agent's run's hold"])
def test_a_slot_held_for_the_gate_goes_to_an_older_gate_waiter_only_after_an_agents_run_was_screened(
        org: OrgPaths, first: bool) -> None:
    """A gate run waiting for a slot before the run on it ends takes it as that run's lease ends when the hold is a
    gate run's (first come, first served); an agent's run's hold (`first`) keeps it until the gate has acted on
    the run: it may be a candidate that sets aside the look that waiter belongs to."""
    slot = org_slots(experiments.load_context(org).spec)[0]
    got: list[float] = []

    def waiter() -> None:
        with lease_slot(org, [slot], holder={"exp": "e9999", "kind": "verify"}, wait_s=20, gate=True):
            got.append(time.monotonic())

    with lease_slot(org, [slot], holder={"exp": "e9998", "kind": "exp" if first else "verify"}, wait_s=20):
        thread = threading.Thread(target=waiter)
        thread.start()
        retry_until(lambda: live_tickets(org.locks / "gate-queue-cpu"), timeout=10, message="the waiter in line")
        hold = GateHold(org, slot, first=first)  # as run_here takes it, before the lease ends
    try:
        time.sleep(1.0)
        assert bool(got) != first, "the older waiter took the slot" if first else "the hold kept it from the waiter"
    finally:
        released = time.monotonic()
        hold.release()
        thread.join(timeout=20)
    assert got and (got[0] >= released) == first


def test_a_run_cancelled_while_it_waits_for_a_slot_leaves_the_line_at_once(org: OrgPaths) -> None:
    """A queued run cancelled while every slot it could take is busy stops waiting within about WANTED_POLL_S, not
    when a slot comes free: it never starts, and its ticket no longer keeps others off the slots it wanted."""
    ctx = experiments.load_context(org)
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.002)
    exp = experiments.queue_experiment(ctx, "alice", "waits for a slot")
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as held:
        for slot in org_slots(ctx.spec):
            held.enter_context(lease_slot(org, [slot], holder={"exp": "test"}, wait_s=30))
        worker = threading.Thread(target=lambda: rows.append(gate.run_experiment(ctx, exp)))
        worker.start()
        retry_until(lambda: ledger.get_experiment(org, exp)["pid"], timeout=30, message="the run to wait")
        time.sleep(2 * WANTED_POLL_S)  # in line, asking whether it is still wanted
        assert ledger.replace_verdict(org, exp, "queued", "cancelled: test")
        worker.join(timeout=3 * WANTED_POLL_S + 5)
        assert not worker.is_alive(), "the cancelled run waited on for a slot"
        assert not live_tickets(org.locks / "queue-cpu")
    assert rows[0]["verdict"] == "cancelled: test" and rows[0]["started"] is None


def test_a_hand_over_steps_the_gate_until_it_is_done_before_the_slot_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new candidate that outranks the verification in flight: one step sets that one aside (cancelling its
    unstarted pairs), the next queues the new one's first pair; the slot is kept through both, and then until the
    queued runs are in line."""
    verify = importlib.import_module("autoorg.gate.verify")
    done: list[str] = []
    work = ["set aside e0009 for e0014", "queued e0014's first pair"]
    monkeypatch.setattr(verify, "step", lambda _paths, **_kw: bool(work) and not done.append(work.pop(0)))
    monkeypatch.setattr(verify, "lined_up", lambda _ctx, _cls, _hold, _s: done.append("lined up") or True)
    ctx: Any = SimpleNamespace(paths=None)
    verify.hand_over(ctx, {"kind": "exp", "verdict": "candidate", "slot_class": "cpu"}, None, print)
    assert done == ["set aside e0009 for e0014", "queued e0014's first pair", "lined up"]
    done.clear()
    verify.hand_over(ctx, {"kind": "exp", "verdict": "no gain", "slot_class": "cpu"}, None, print)
    assert done == []  # an agent's run that is no candidate gives its slot back at once


def test_a_verification_set_aside_starts_over_on_the_new_head_when_the_bigger_win_is_promoted(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), WARMUP_FRAC=0.15)  # ~4σ
    with hold_all_slots_but_one(org) as held:  # its first look is the one set aside (a second one could promote it)
        small = run_exp(org, "alice", "warmup 0.15")
        (ver,) = ledger.verifications(org, exp=small)
        assert len(ver["runs"]) == 2, ver
        set_knobs(org.worktree("bob"), LEARNING_RATE=0.006, BATCH_SIZE=128)  # over 20σ, on other lines of train.py
        big = screened_while_a_verification_waits(org, "bob", "lr 0.006, batch 128", held)
    drive_gate(org, lambda: settled(org, small, big), timeout=120, message="both to be decided")
    assert verdict(org, big) == "promoted"
    (promo,) = [p for p in ledger.promotions(org) if p["exp"] == big]
    first, *later = ledger.verifications(org, exp=small)
    assert first["status"] == "superseded" and first["head"] == promo["old_head"] and later
    assert later[0]["head"] == promo["new_head"]  # its pairs against the old head were not carried over


def test_a_verification_is_set_aside_by_its_pairs_gain_and_yields_to_every_waiting_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`outranking` weighs the verification in flight by the lower of its claim and its pairs' mean gain;
    `waiting_for_slots` names the agents' runs that were waiting when the look landed until every one started (or
    was withdrawn), for at most the rounds they take, and the runs queued next that fill their last round."""
    verify = importlib.import_module("autoorg.gate.verify")
    now = time.time()
    stamp = lambda ago: clock.iso_of_epoch(now - ago)  # noqa: E731
    ctx: Any = type("Ctx", (), {"task": load_task(SYNTHETIC / "task.yaml"), "paths": None, "spec": None})()
    ctx.task.budget, ctx.task.startup = {"cpu": 60.0}, {"cpu": 30.0}
    row = lambda exp, metric, **kw: {"exp": exp, "metric": metric, "ref_mean": 1.16, "band": 0.04,  # noqa: E731
                                     "slot_class": "cpu", "verdict": "candidate", **kw}
    cand, rival = row("e1", 1.0), row("e2", 0.91)  # claims of 4 and 6.25 bands
    rows: list[dict[str, Any]] = [rival]
    monkeypatch.setattr(verify.ledger, "experiments",
                        lambda *_a, **kw: [r for r in rows if kw.get("verdict") in (None, r["verdict"])])
    monkeypatch.setattr(verify.ledger, "verifications", lambda *_a, **_kw: [])  # none set aside
    monkeypatch.setattr(verify, "noise", lambda _paths, _cls: SimpleNamespace(sigma=0.04))  # σ now: a band
    monkeypatch.setattr(verify, "cleared_for_verification", lambda _ctx, _c: True)
    monkeypatch.setattr(verify, "class_slots", lambda _spec, _cls: ["cpu0", "cpu1"])
    assert verify.outranking(ctx, cand) is None  # 6.25 < 2 x 4
    assert verify.outranking(ctx, cand, [0.10, 0.09]) == rival  # its pairs say 2.4 bands
    assert verify.outranking(ctx, cand, [0.20, 0.20]) is None  # never above its claim

    look = [{"finished": stamp(5)}, {"finished": stamp(6)}]
    rows[:] = [row(e, 1.2, verdict="queued", queued=stamp(100), started=None) for e in ("e3", "e4", "e5")]
    assert verify.waiting_for_slots(ctx, "cpu", look) == ["e3", "e4", "e5"]
    rows[0].update(verdict="running", started=stamp(2))
    assert verify.waiting_for_slots(ctx, "cpu", look) == ["e4", "e5"]
    rows[1].update(verdict="running", started=stamp(1))  # a round of two started: the third still goes first
    assert verify.waiting_for_slots(ctx, "cpu", look) == ["e5"]
    rows[2].update(verdict="cancelled: withdrawn by its agent")  # withdrawn: nothing is left waiting
    assert verify.waiting_for_slots(ctx, "cpu", look) == []
    rows[:] = [row(e, 1.2, verdict="queued", queued=stamp(300), started=None) for e in ("e3", "e4", "e5")]
    assert verify.waiting_for_slots(ctx, "cpu", [{"finished": stamp(175)}]) == ["e3", "e4", "e5"]
    assert verify.waiting_for_slots(ctx, "cpu", [{"finished": stamp(185)}]) == []  # two rounds' length at most
    # Queued after the look landed: the first such run fills the second round beside the third waiting run, the
    # next does not go first; nor does one queued once the last waiting run had started (its round was on).
    rows += [row(e, 1.2, verdict="queued", queued=stamp(ago), started=None) for e, ago in (("e6", 4), ("e7", 3))]
    assert verify.waiting_for_slots(ctx, "cpu", look) == ["e3", "e4", "e5", "e6"]
    for r, ago in zip(rows[:3], (2.5, 2.5, 1.5), strict=True):
        r.update(verdict="running", started=stamp(ago))
    assert verify.waiting_for_slots(ctx, "cpu", look) == ["e6"]
    for r in rows[3:]:
        r.update(queued=stamp(1))
    assert verify.waiting_for_slots(ctx, "cpu", look) == []


# z 12: nothing promotes, it runs to its last look. A start-up allowance of 10 s: the look waits for bob's run for a
# run's length (budget and start-up), and on a loaded machine his worker took longer than the task's 0.8 s to start.
@pytest.mark.parametrize("org", [{"z": 12.0, "startup": 10.0}], indirect=True)
def test_an_undecided_verification_lets_the_agents_waiting_runs_start_before_its_next_look(org: OrgPaths) -> None:
    """With its second look undecided, a verification lets an agent's run that was waiting for a slot when the look
    landed start before it queues the next pairs (it held both slots from its first pair on)."""
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0015)  # a real gain of ~5σ: no futility stop
    small = run_exp(org, "alice", "lr 0.0015")
    assert ledger.verifications(org, exp=small), verdict(org, small)  # its first pair is queued
    set_knobs(org.worktree("bob"), WARMUP_FRAC=0.11)
    exps: list[str] = []
    worker = threading.Thread(target=lambda: exps.append(run_exp(org, "bob", "warmup 0.11")))
    worker.start()
    drive_gate(org, lambda: settled(org, small) and exps, timeout=180, message="the verification and bob's run")
    worker.join(timeout=60)
    (ver,) = ledger.verifications(org, exp=small)
    runs = [ledger.get_experiment(org, e) for e in ver["runs"]]
    bob = ledger.get_experiment(org, exps[0])
    assert len(runs) == 6 and ver["status"] == "rejected", ver
    assert bob["queued"] < max(r["finished"] for r in runs[:4])  # it was waiting when the second look landed
    assert bob["started"] < min(r["queued"] for r in runs[4:])  # and started before the third pair was queued


@pytest.mark.parametrize("org", [{"evaluator": False}], indirect=True)  # the evaluator takes the harness's seed
def test_a_candidate_that_ignores_its_seed_is_rejected_and_leaves_sigma_alone(org: OrgPaths) -> None:
    ctx = experiments.load_context(org)
    sigma_before = gate.noise(org, "cpu")
    train = org.worktree("alice") / TRAIN
    pinned = lucky_seed({**HEAD_KNOBS, "LEARNING_RATE": 0.0011}, 2.5)
    train.write_text(train.read_text().replace("args = parser.parse_args()\n",
                                               f"args = parser.parse_args()\nargs.seed = {pinned}\n"))
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.0011)  # a hair worse: only the pinned seed makes it a win
    exp = run_exp(org, "alice", "lr 0.0011, seed pinned for reproducibility")
    ledger.update_experiment(org, exp, verdict="candidate")
    drive_gate(org, lambda: settled(org, exp), message="the pinned-seed candidate to be decided")
    assert verdict(org, exp).startswith("rejected: ignores its seed")
    (ver,) = ledger.verifications(org, exp=exp)
    cands = [ledger.get_experiment(org, e) for e in ver["runs"][1::2]]
    assert len({r["seed"] for r in cands}) == len(cands) >= 2 and len({r["metric"] for r in cands}) == 1
    after = gate.noise(org, "cpu")  # the head's arms joined its group; the pinned group is left out
    assert after.sigma is not None and sigma_before.sigma is not None and after.sigma > 0.5 * sigma_before.sigma
    assert after.dof == sigma_before.dof + len(cands)
    assert ctx.program_head() == head(org) and ledger.promotions(org) == []
