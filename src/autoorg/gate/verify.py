"""The verification gate: the noise band, screening runs, re-running candidates, promotion.

The statistics, for a task metric on one slot class:

- the program head's *mean*: its runs of kind `baseline` and `exp` with the head's exact tree (one per seed,
  never a seed an agent chose), the head's arm of every pair verified against it, plus the re-runs that promoted
  it. A head needs `baseline.repeats` (K) of them before anything is judged
  against it; `step` queues the missing ones on free slots.
- the noise σ: pooled over every tree run more than once (distinct seeds), so it sharpens as runs accumulate,
  with dof = Σ(nᵢ − 1); a tree whose runs ignore their seed is left out (gate.stats.pooled_noise).
- the band for "better": q·σ·√(1/n₁ + 1/n₂), where q is the one-sided Student-t quantile at the confidence of z
  (Φ(z); it tends to z as dof grows — with σ estimated from few runs, z alone would promote noise), never below
  `floor` × |head mean|.

A run is *screened* against the head it started from: beating its mean by more than the band at SCREEN_Z with
n₁ = 1 makes it a candidate (a loose screen, so a real 3σ win is not lost to one unlucky run). A candidate is
squashed onto the current head without any checkout (merge-tree; a conflict: stale), checked (editable paths only,
protected files unchanged), and re-run in same-seed pairs, on slots other than the claimant's (while two are left): each pair is one
run of the head and one of the candidate, started together with one fresh seed, so what moves both alike cancels
in their difference. Pairs are queued a look at a time (gate.stats.looks: 1 pair, then doubling up to
`gate.repeats`, R) and judged by the sequential rule in gate.stats.paired_verdict against σ_d estimated from the
pairs' own spread, pooled with the org's other verifications, floored (gate.stats.pair_noise): promote, reject, or
queue the next look. A verification
undecided at a look is set aside (`paused`) for a waiting candidate that claims over PREEMPT times its gain, and
goes on from that look once that one is decided, unless the head moved meanwhile; one whose look is still in
flight is set aside at once, its pairs that have not started cancelled (set_aside_before_its_look). From its second look on, an
undecided verification lets every one of the agents' runs that were waiting for a slot when its look landed start
before it queues the next (YIELD_FROM_PAIRS, waiting_for_slots), unless its gains so far would clear the bar of a
next look at most DUE_WITHIN_PAIRS pairs away (due_at_next_look). Before
that, re-runs on distinct seeds that do not vary (gate.stats.ignores_seed) reject the candidate as ignoring its
seed. Every re-run must measure cleanly. Promotion fast-forwards `org/<tag>` with a compare-and-swap. The head's
arm of each pair counts towards the head's mean.

`step(paths)` does one idempotent unit of that work under `locks/gate.lock` and returns at once: runs are
detached `autoorg exp worker` processes, and a later step decides when they have landed (the daemon's, or the one
`hand_over` makes while the run that landed still keeps its slot for the gate's next runs). Each step first puts
back a move of the program branch the gate did not make (guard.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from autoorg import clock, executors, experiments, workspace
from autoorg.compute.slots import DEFAULT_WAIT_S, GateHold, class_slots
from autoorg.errors import AutoorgError, GitError, Say
from autoorg.experiments import OrgContext, ledger
from autoorg.experiments.run import execute, has_slot
from autoorg.gate.announce import announce_promotion, publish_board, tell_claimant
from autoorg.gate.guard import revert_foreign_move
from autoorg.gate.heads import (
    HeadStats,
    baseline_need,
    head_stats,
    noise,
    pair_noise_of,
    same_seed_pairs,
    settings,
    slot_classes,
)
from autoorg.gate.heldout import check_heldout, describe
from autoorg.gate.islands import migrate
from autoorg.gate.review import cleared_for_verification
from autoorg.gate.stats import (
    Noise,
    band,
    bar_after,
    ignores_seed,
    looks,
    paired_verdict,
    promoting_looks,
    promotion_bound,
)
from autoorg.paths import OrgPaths

HAND_OVER_WAIT_S = 30.0  # longest a finished gate run keeps its slot for the rest of its look, or the gate's lock
WORKERS_START_S = 15.0  # longest it keeps it for the runs the gate queued to line up
# Gate steps a hand-over takes while it keeps the slot: each step does one thing to the verification in flight (set
# it aside for a bigger win, then start the bigger win's). After one step the hold went with no pair queued, an
# agent's waiting run took the new candidate's slot, and its first pair waited that run out (82 s, twice in
# benchmarks/first_promotion.py --timeline).
HAND_OVER_STEPS = 4
# Screen at ~84% one-sided: a true 3σ win passes ~95% of the time (93% while σ has 3 dof), ~16% of no-effect runs
# do. At 0.5 (69%) twice as many no-effect runs became candidates, and each costs at least one same-seed pair on two
# slots: on nanochat's noisy 2-core CPU slots they were most of the verifications before the first promotion
# (benchmarks/first_promotion.py --timeline: 5 of 7 in two runs, every one claiming under 1σ).
SCREEN_Z = 1.0
# A verification undecided at a look is set aside for a waiting candidate whose run claims over PREEMPT times its
# gain (`standings`), and goes on from that look afterwards: a -0.37 win (DEPTH=1 on nanochat) waited 12 minutes
# behind all 8 pairs of a half-σ change (benchmarks/first_promotion.py --timeline).
PREEMPT = 2.0
# A verification still undecided (from YIELD_FROM_PAIRS pairs on; at 0 also before its first pair, `runs_first`)
# lets the agents' runs that were waiting when its look landed (or its candidate did) start before it queues the
# next: with 2 slots a verification holds both, and one that ran all 8 pairs (a real gain of ~1.4 σ_d, not
# confirmed) kept every experiment waiting for 11 minutes, among them the org's first win (`DEPTH = 2`), queued at
# 1.4 minutes and run at 17 (benchmarks/first_promotion.py --timeline). A win found in the round it yields
# outranks the verification at its next look (PREEMPT). One whose gains so far (before a pair: its claim) already
# clear the next promoting look's bar does not yield: it is expected to promote there, and the round only delayed
# the org's first promotion (`DEPTH = 2` on nanochat: gains 0.22 and 0.20 at two pairs against a bar of 0.23, a
# round of agents' runs, then promoted at four). That bar is σ_d's estimates with the dof that look's pairs bring
# (gate.stats.after_pairs), not as they stand: in a fresh org σ has the 3 dof of 4 baselines, and `DEPTH = 2`'s
# first claim (0.21 val_bpb, 6.6σ) fell under a bar of 0.38 at them (0.17 at the 7 dof of two pairs), let three
# waiting runs go first (two rounds, one slot idle in the second) and was promoted at two pairs against a bar of
# 0.12, 11.3 minutes after `up` (benchmarks/first_promotion.py --timeline). From 2 pairs, in the slowest first
# promotions a first-round claim of ~1.5σ (SEQ_LEN=128 alone; a lucky WARMDOWN_FRAC run) took both slots for two
# looks while probes queued at the start waited, among them the org's first win (`DEPTH = 2`, queued at 232 s,
# run at 750 s; 16.2 and 18.9 minutes to the first promotion, benchmarks/first_promotion.py --timeline).
YIELD_FROM_PAIRS = 0
# ... but only when that next look is at most this many pairs away: from 4 pairs of 8 the next look holds both slots
# for four rounds, and a verification on course to promote a small gain there still lets a round go first. On
# nanochat `MATRIX_LR = 0.0422` (gains of 0.06 over 4 pairs, due at 8) kept `DEPTH = 1`, the other side of a DEPTH
# move that hurt by 0.5, waiting for those four rounds, and was promoted by 0.0003 over its bar 19 minutes after `up`;
# `BATCH_TOKENS = 4096` (0.09) kept `BATCH_TOKENS = 2048` waiting the same way (benchmarks/first_promotion.py
# --timeline). A win found in the yielded round outranks the verification (PREEMPT) and needs two pairs.
DUE_WITHIN_PAIRS = 2


def run_experiment(ctx: OrgContext, exp: str, *, say: Say | None = None,
                   wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """Run a queued experiment to its end (experiments.execute) and screen an agent's measured run against the
    program head, refreshing the board, then revert a move of the program branch the gate did not make: what
    `exp run`, an `exp worker` and the offline researcher all call."""
    row = execute(ctx, exp, say=say, wait_s=wait_s, on_measured=screen,
                  on_recorded=functools.partial(hand_over, log=say or (lambda _line: None)),
                  launch=executors.executor_for(ctx.spec).launch)
    with gate_lock(ctx.paths) as held:  # a run may have moved the program branch: put it back at once
        if held:
            revert_foreign_move(ctx, say or (lambda _line: None))
    publish_board(ctx)  # every ending, a baseline's or a crash's too: the board never keeps a run running
    return row


def hand_over(ctx: OrgContext, row: dict[str, Any], hold: GateHold, log: Say) -> None:
    """A run has just been recorded and its slot is still kept for the gate (`hold`): when the gate may want it
    next (a gate run landed, or an agent's run became a candidate), let the gate act now, and keep the slot until
    the runs it queued are waiting for slots. Without this, an agent's run waiting for a slot takes it in the
    moment between a look landing and the gate queuing the next one, and every look waits a whole run.

    A finished gate run first waits (at most HAND_OVER_WAIT_S) for the gate runs still running beside it that
    started with it, its pair's other arm or the last baselines of its head, unless gate runs are waiting anyway
    (the slot is theirs).
    The run is recorded whatever the gate makes of it: a gate error here is logged, and the daemon's next step
    meets it again."""
    gate_run = row["kind"] != "exp"
    if not gate_run and row["verdict"] != "candidate":
        return
    cls = row["slot_class"]
    deadline = time.monotonic() + HAND_OVER_WAIT_S
    while gate_run and time.monotonic() < deadline and not _gate_runs(ctx, cls, "queued") \
            and _landing_soon(ctx, row):
        time.sleep(0.2)
    try:
        for _ in range(HAND_OVER_STEPS):  # until the gate has nothing left to do: a look's pairs cancelled for a
            if not step(ctx.paths, log=log, wait_s=HAND_OVER_WAIT_S):  # bigger win in one step, its pairs queued
                break                                                  # in the next
    except AutoorgError as exc:
        log(f"gate: {exc}")
        return
    lined_up(ctx, cls, hold, WORKERS_START_S)


def lined_up(ctx: OrgContext, cls: str, hold: GateHold, wait_s: float) -> bool:
    """Wait (at most wait_s) until every queued gate run of the class is in the gate's line for a slot, or has one
    (its `leased` mark: a pair's arm waiting for the other's); False when wait_s ran out first. The queued runs'
    workers line up a Python start-up each after the gate queued them. A run counts by its worker's pid: the tickets
    of runs the gate step just cancelled (a verification set aside for a bigger win) stay in line until their
    workers notice, and counted as tickets they let the hold go early, and an agent's waiting run took the new
    candidate's slot while its first pair waited a whole run (benchmarks/first_promotion.py --timeline, 72 s)."""
    deadline = time.monotonic() + wait_s
    while True:
        in_line = hold.waiting_pids()
        if all(r["pid"] in in_line or has_slot(ctx.paths, r["exp"]) for r in _gate_runs(ctx, cls, "queued")):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _landing_soon(ctx: OrgContext, row: dict[str, Any]) -> list[str]:
    """The other gate runs running that started at most HAND_OVER_WAIT_S after `row` (with the same budget they
    land within that of it): worth keeping the slot for. A baseline that started a run's length later is not (a
    slot sat idle 30 s for one in benchmarks/first_promotion.py --timeline)."""
    latest = clock.parse_iso(row["started"]).timestamp() + HAND_OVER_WAIT_S if row["started"] else float("inf")
    return [r["exp"] for r in _gate_runs(ctx, row["slot_class"], "running")
            if r["exp"] != row["exp"] and (not r["started"] or clock.parse_iso(r["started"]).timestamp() <= latest)]


def _gate_runs(ctx: OrgContext, cls: str, verdict: str) -> list[dict[str, Any]]:
    return [r for r in ledger.experiments(ctx.paths, kinds=("baseline", "verify"), verdict=verdict)
            if r["slot_class"] == cls]


# ---------------------------------------------------------------------------------------------------------------
# Screening one finished run


def screen(ctx: OrgContext, exp: str) -> str:
    """Judge a measured experiment against the head it started from (else the current head): `candidate`,
    `no gain`, `same as head` or `pending` (no baseline yet). Records the reference, delta and band."""
    row = ledger.get_experiment(ctx.paths, exp)
    st = settings(ctx.spec)
    cls = row["slot_class"]
    need = baseline_need(ctx, cls)
    stats = head_stats(ctx, row["head"], cls)
    if stats.n < need:
        current = ctx.head_of(row["agent"])
        if current != row["head"]:
            stats = head_stats(ctx, current, cls)
    same = row["tree"] == workspace.tree_of(ctx.repo, row["head"])
    if stats.n < need or stats.mean is None:
        verdict = "same as head" if same else "pending"
        ledger.update_experiment(ctx.paths, exp, verdict=verdict, ref_head=stats.head, ref_n=stats.n)
        return verdict
    noise_ = noise(ctx.paths, cls)
    width = band(noise_, 1, stats.n, stats.mean, SCREEN_Z, st.floor)
    if same:
        verdict = "same as head"
    elif width is None:
        verdict = "pending"
    else:
        verdict = "candidate" if ctx.task.improvement(row["metric"], stats.mean) > width else "no gain"
    ledger.update_experiment(ctx.paths, exp, verdict=verdict, ref_head=stats.head, ref_mean=stats.mean,
                             ref_n=stats.n, delta=row["metric"] - stats.mean, band=width, sigma=noise_.sigma)
    return verdict


# ---------------------------------------------------------------------------------------------------------------
# One unit of gate work


def step(paths: OrgPaths, log: Say = print, *, wait_s: float = 0.0) -> bool:
    """Do one idempotent unit of gate work; returns whether anything was done. Never blocks on a run: runs are
    detached workers. Two callers never double-verify: the work happens under `locks/gate.lock` (a lock busy for
    `wait_s` returns False). An org that is not running (`down` is stopping it, or it stopped) gets no gate work:
    no run is queued that nothing would run, and `down` is left nothing to chase."""
    with gate_lock(paths, wait_s) as held:
        if not held:
            return False
        ctx = experiments.load_context(paths)
        if ctx.state.status != "running":
            return False
        did = revert_foreign_move(ctx, log)
        did = sweep_dead_runners(ctx, log) or did
        did = ensure_baselines(ctx, log) or did
        did = screen_pending(ctx, log) or did
        did = advance_verification(ctx, log) or did
        did = migrate(ctx, log) or did
        if did:
            ledger.write_results_tsv(paths, ctx.task.metric)
            publish_board(ctx)
        return did


@contextlib.contextmanager
def gate_lock(paths: OrgPaths, wait_s: float = 0.0) -> Iterator[bool]:
    """`locks/gate.lock`, waiting at most wait_s: yields whether it is held (one gate at a time moves the
    branch)."""
    paths.locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.locks / "gate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def sweep_dead_runners(ctx: OrgContext, log: Say) -> bool:
    """Queued or running rows whose runner process is gone (killed, machine rebooted): what is left of the run is
    killed (nothing else enforces its budget), a started run becomes a crash, one that never started is cancelled
    (it is no crash of the code), and the agent that queued it gets its `result` message."""
    did = False
    executor = executors.executor_for(ctx.spec)
    for verdict in ledger.UNFINISHED:
        for row in ledger.experiments(ctx.paths, verdict=verdict):
            if executor.runner_alive(row):
                continue
            if verdict == "queued" and executor.name == "ray" and respawns(ctx, row["exp"]) < MAX_RESPAWNS:
                # its worker died before its Ray task started (a head restart kills drivers): submit it again
                pid = executor.spawn_worker(ctx.paths, row["exp"])
                log(f"{row['exp']} ({row['agent']}): its worker died before it started; submitted again ({pid})")
                did = True
                continue
            why = "crash: runner died" if verdict == "running" else "cancelled: its runner died before it started"
            if not ledger.claim_unfinished(ctx.paths, row["exp"], why, finished=clock.now_iso(), pid=None):
                continue
            killed = executor.kill_orphaned_run(ctx.paths, row["exp"])
            log(f"{row['exp']} ({row['agent']}): its runner died; recorded as {why.split(':')[0]}"
                + (f", {len(killed)} leftover process(es) killed" if killed else ""))
            if row["kind"] == "exp":
                tell_claimant(ctx, row, f"{row['exp']} ({row['description']}) {why}: it has no result; "
                                        f"log kept at {ctx.paths.runs / row['exp'] / 'log'}")
            did = True
    return did


MAX_RESPAWNS = 3  # a queued Ray run whose worker died before it started is submitted again at most this often


def respawns(ctx: OrgContext, exp: str) -> int:
    """How often a queued run was submitted again so far; counts this time (runs/<id>/respawns)."""
    path = ctx.paths.runs / exp / "respawns"
    try:
        done = int(path.read_text())
    except (OSError, ValueError):
        done = 0
    path.write_text(str(done + 1))
    return done


def fresh_seeds(ctx: OrgContext, tree: str, n: int, *others: str) -> list[int]:
    """n seeds never used with tree (nor with any of the other trees)."""
    trees = {tree, *others}
    used = {r["seed"] for r in ledger.experiments(ctx.paths) if r["tree"] in trees}
    seeds: list[int] = []
    while len(seeds) < n:
        s = experiments.new_seed()
        if s not in used and s not in seeds:
            seeds.append(s)
    return seeds



def ensure_baselines(ctx: OrgContext, log: Say) -> bool:
    """Queue runs of the program head (of each island's head) until it has K per slot class (recording the
    baseline when complete)."""
    did = False
    for head in dict.fromkeys(workspace.rev_parse(ctx.repo, branch) for branch in ctx.lines()):
        did = _ensure_baseline(ctx, head, log) or did
    return did


def _ensure_baseline(ctx: OrgContext, head: str, log: Say) -> bool:
    st = settings(ctx.spec)
    did = False
    tree = workspace.tree_of(ctx.repo, head)
    for cls in slot_classes(ctx):
        # In-flight runs first, then the finished ones: a run landing in between is counted twice (and topped up
        # at the next step), never missed (which would queue one run too many).
        mine = [r for r in ledger.experiments(ctx.paths, kinds=("baseline",))
                if r["tree"] == tree and r["slot_class"] == cls]
        inflight = sum(r["verdict"] in ledger.UNFINISHED for r in mine)
        crashed = sum(r["verdict"].startswith("crash") for r in mine)
        stats = head_stats(ctx, head, cls)
        need = baseline_need(ctx, cls)
        if stats.n >= need:
            record_baseline(ctx, stats, cls, log)
            continue
        if crashed >= st.baseline_repeats:
            continue  # the head itself does not run; its crashes are in the ledger for a person to read
        missing = need - stats.n - inflight
        if missing <= 0:
            continue
        queue_baseline_runs(ctx, head, cls, missing, first=stats.n + inflight + 1, of=need)
        log(f"baseline: queued {missing} run(s) of the head {head[:10]} on {cls} ({stats.n} of {need} done)")
        did = True
    return did


def queue_baseline_runs(ctx: OrgContext, head: str, cls: str, count: int, *, first: int = 1,
                        of: int | None = None, note: str = "") -> list[str]:
    """Queue `count` runs of `head` on slot class `cls` with fresh seeds, each started by a detached worker; they
    are numbered `first`.. of `of` in their descriptions. The gate's baselines and `exp baseline` both use it."""
    queued = []
    tree = workspace.tree_of(ctx.repo, head)
    for i, seed in enumerate(fresh_seeds(ctx, tree, count)):
        exp = experiments.queue_run(ctx, kind="baseline", agent="gate", commit=head, head=head,
                                    description=f"baseline {first + i}/{of or count} of {head[:10]}{note}",
                                    seed=seed, budget=ctx.task.budget[cls], slot_class=cls)
        executors.executor_for(ctx.spec).spawn_worker(ctx.paths, exp)
        queued.append(exp)
    return queued


def record_baseline(ctx: OrgContext, stats: HeadStats, cls: str, log: Say) -> None:
    if any(b["head"] == stats.head and b["slot_class"] == cls for b in ledger.baselines(ctx.paths)):
        return
    noise_ = noise(ctx.paths, cls)
    ledger.add_baseline(ctx.paths, task=ctx.task.name, slot_class=cls, head=stats.head, n=stats.n,
                        mean=stats.mean, sigma=noise_.sigma, dof=noise_.dof)
    sigma = f"{noise_.sigma:.4g}" if noise_.sigma is not None else "?"
    log(f"baseline of {stats.head[:10]} on {cls}: {ctx.task.metric} {stats.mean:.6g} over {stats.n} runs, "
        f"σ {sigma} (dof {noise_.dof})")


def screen_pending(ctx: OrgContext, log: Say) -> bool:
    did = False
    for row in ledger.experiments(ctx.paths, kinds=("exp",), verdict="pending"):
        verdict = screen(ctx, row["exp"])
        if verdict != "pending":
            log(f"{row['exp']} ({row['agent']}) screened once the baseline landed: {verdict}")
            did = True
    return did


def advance_verification(ctx: OrgContext, log: Say) -> bool:
    """Decide the verification in flight once its runs landed; else start one for the best candidate."""
    for unfinished in ledger.verifications(ctx.paths, status="promoting"):
        return complete_promotion(ctx, unfinished, log)
    active = ledger.verifications(ctx.paths, status="running")
    if active:
        return decide(ctx, active[0], log)
    candidates = [c for c in ledger.experiments(ctx.paths, kinds=("exp",), verdict="candidate")
                  if cleared_for_verification(ctx, c) and _resumable(ctx, c)]  # with a review: approved ones
    if not candidates:
        return False
    best = max(candidates, key=standings(ctx))
    if runs_first(ctx, best):
        return False
    start_verification(ctx, best, log)
    return True


def runs_first(ctx: OrgContext, cand: dict[str, Any]) -> list[str]:
    """The agents' runs that start before a fresh verification of `cand` (YIELD_FROM_PAIRS at no pairs yet): those
    waiting for a slot when it could first be verified (waiting_for_slots): when it landed, or when the baseline
    runs of the head it was screened against did, if later. Unless its claim would clear the bar of the first look
    that may promote (the claim taken as its pairs' gain, σ_d's estimates with that look's dof:
    gate.stats.bar_after): a claim that big starts at once, a lesser one waits its turn. One set aside with pairs
    already (paused) goes on at once.

    A run of an org's first round lands before its head's baselines, and it is screened when they land. Counted
    from its own landing, the wait had run out by then, and its pairs went before the runs queued at `up`. On
    nanochat a `MATRIX_LR` claim of 0.09 went a round before `DEPTH = 5`, whose other side was the first promotion,
    at 14.8 minutes; an `EMBEDDING_LR` one of 0.07 before `DEPTH = 4` in another of those five runs
    (benchmarks/first_promotion.py --timeline)."""
    if YIELD_FROM_PAIRS > 0 or None in (cand["ref_mean"], cand["metric"], cand["finished"]) \
            or ledger.verifications(ctx.paths, exp=cand["exp"], status="paused"):
        return []
    st, cls = settings(ctx.spec), cand["slot_class"]
    claim = ctx.task.improvement(cand["metric"], cand["ref_mean"])
    schedule = looks(st.repeats)
    first_promoting = schedule[1] if len(schedule) > 1 else schedule[0]
    bar = bar_after(pair_noise_of(ctx, cls, [], leave_out=-1), 0, first_promoting, st.z, st.repeats)
    if bar is not None and claim > max(bar[0], st.floor * abs(cand["ref_mean"])):
        return []
    screened_by = [r for r in ledger.experiments(ctx.paths, kinds=("baseline",))
                   if r["head"] == (cand["ref_head"] or cand["head"]) and r["slot_class"] == cls and r["finished"]]
    return waiting_for_slots(ctx, cls, [cand, *screened_by])


def standings(ctx: OrgContext) -> Callable[..., float]:
    """What a candidate weighs when the gate chooses whom to verify or set aside (biggest first: real wins are
    verified before noise): `standing(cand, gains=None)` is its claimed gain over the head it was screened against,
    capped by the mean of its paired gains so far (`gains`; by default those of its verification set aside, as
    `outranking` weighed them), in σ of its slot class's runs as the org knows σ now. Choosing by the claim alone
    resumed the one set aside (its claim was the bigger), which was set aside again at once for the same rival, some
    300 times a minute (benchmarks/first_promotion.py). Each in the band it was screened with was no common unit:
    a band from 4 baselines whose σ came out 6 times too small (3 dof) made a 4σ claim outweigh a 20σ one."""
    unit = functools.cache(lambda cls: noise(ctx.paths, cls).sigma)

    def standing(cand: dict[str, Any], gains: list[float] | None = None) -> float:
        if cand["metric"] is None or cand["ref_mean"] is None:
            return 0.0
        if gains is None:
            gains = [ctx.task.improvement(c, h)
                     for ver in ledger.verifications(ctx.paths, exp=cand["exp"], status="paused")
                     for h, c in same_seed_pairs([ledger.get_experiment(ctx.paths, e) for e in ver["runs"]],
                                                 ver["head"])]
        gain = ctx.task.improvement(cand["metric"], cand["ref_mean"])
        if gains:
            gain = min(gain, statistics.fmean(gains))
        scale = unit(cand["slot_class"]) or cand["band"]
        return gain / scale if scale else 0.0

    return standing


def outranking(ctx: OrgContext, cand: dict[str, Any], gains: list[float] | None = None) -> dict[str, Any] | None:
    """The best candidate waiting for verification that outweighs `cand`, the one being verified, over PREEMPT
    times (else None; `standings`): `decide` sets that verification aside at a look for it. `cand` weighs the lower
    of its claim and its paired gains' mean so far: a claim is one run picked for beating the head (in
    benchmarks/first_promotion.py a 0.16 claim's pairs gave 0.10, and a 0.25 win waited 8 pairs behind it)."""
    standing = standings(ctx)
    mine = max(standing(cand, gains or []), 0.0)
    weighed = [(standing(c), c) for c in ledger.experiments(ctx.paths, kinds=("exp",), verdict="candidate")
               if c["exp"] != cand["exp"] and c["slot_class"] == cand["slot_class"]]
    rivals = [(w, c) for w, c in weighed if w > PREEMPT * mine and cleared_for_verification(ctx, c)]
    return max(rivals, key=lambda wc: wc[0])[1] if rivals else None


def resume_paused(ctx: OrgContext, cand: dict[str, Any], branch: str, head: str, log: Say) -> bool:
    """Go on with a verification of `cand` that was set aside (outranking), from its next look, when the head it
    is paired against is still the branch's head: its pairs so far stand, and its sequential test goes on exactly
    as if it had never stopped. One whose head moved is superseded (a fresh one starts). Returns whether one went
    on."""
    for ver in ledger.verifications(ctx.paths, exp=cand["exp"], status="paused"):
        if ver["head"] != head or branch_of(ctx, ver) != branch:
            ledger.update_verification(ctx.paths, ver["id"], status="superseded",
                                       why="the program head moved while it was set aside", finished=clock.now_iso())
            continue
        st = settings(ctx.spec)
        done = len(same_seed_pairs([ledger.get_experiment(ctx.paths, e) for e in ver["runs"]], ver["head"]))
        more = queue_pairs(ctx, cand, ver["head"], ver["commit_sha"], next_look(done, st.repeats), first=done + 1,
                           of=st.repeats)
        ledger.update_verification(ctx.paths, ver["id"], status="running", why="", runs=[*ver["runs"], *more])
        ledger.update_experiment(ctx.paths, cand["exp"], verdict="verifying")
        log(f"{cand['exp']} ({cand['agent']}): verification goes on after {done} pairs ({', '.join(more)})")
        return True
    return False


def _runs_in_flight(ctx: OrgContext, ver: dict[str, Any]) -> bool:
    return any(ledger.get_experiment(ctx.paths, e)["verdict"] in ledger.UNFINISHED for e in ver["runs"])


def _resumable(ctx: OrgContext, cand: dict[str, Any]) -> bool:
    """Not a candidate whose verification was set aside with a pair still running (it goes on once that lands)."""
    return not any(_runs_in_flight(ctx, v) for v in ledger.verifications(ctx.paths, exp=cand["exp"], status="paused"))


def branch_of(ctx: OrgContext, ver: dict[str, Any]) -> str:
    """The branch a verification is on (rows from before islands: the program branch)."""
    return ver.get("branch") or ctx.program_branch


def start_verification(ctx: OrgContext, cand: dict[str, Any], log: Say) -> None:
    repo, paths = ctx.repo, ctx.paths
    branch = ctx.branch_of(cand["agent"])
    head = workspace.rev_parse(repo, branch)
    if resume_paused(ctx, cand, branch, head, log):
        return
    message = f"{cand['description']}\n\nautoorg: {cand['exp']} by {cand['agent']}, verified by the gate"
    try:
        squashed = workspace.squash_onto(repo, cand["commit_sha"], head, message, author=cand["agent"])
        failed = None
    except GitError as exc:  # e.g. its commit is gone: decided now, not retried forever
        squashed, failed = None, f"git could not put it on the program head ({exc})"
    if squashed is None or squashed == head:
        why = failed or ("conflicts with the program head" if squashed is None
                         else "its change is already in the program head")
        ledger.add_verification(paths, exp=cand["exp"], head=head, commit_sha=None, status="stale", why=why,
                                finished=clock.now_iso(), branch=branch)
        ledger.update_experiment(paths, cand["exp"], verdict=f"stale: {why}")
        tell_claimant(ctx, cand, f"Your candidate {cand['exp']} ({cand['description']}) is stale: {why}. Bring your "
                         f"branch up to date (git merge {branch}) and run it again.")
        log(f"{cand['exp']} ({cand['agent']}): stale, {why}")
        return
    bad = experiments.boundary_violations(ctx.task, workspace.changed_paths(repo, head, squashed))
    protected_now = workspace.path_fingerprint(repo, squashed, ctx.task.protected)
    if not bad and protected_now != workspace.path_fingerprint(repo, ctx.state.base, ctx.task.protected):
        bad = ["protected files differ from the org's base"]
    if bad:
        why = "touches " + ", ".join(bad)
        ledger.add_verification(paths, exp=cand["exp"], head=head, commit_sha=squashed, status="rejected", why=why,
                                finished=clock.now_iso(), branch=branch)
        _reject(ctx, cand, why, log)
        return
    workspace.keep_ref(repo, f"refs/autoorg/{paths.tag}/verify/{cand['exp']}", squashed)
    st = settings(ctx.spec)
    runs = queue_pairs(ctx, cand, head, squashed, looks(st.repeats)[0], first=1, of=st.repeats)
    ledger.add_verification(paths, exp=cand["exp"], head=head, commit_sha=squashed, runs=runs, status="running",
                            branch=branch)
    ledger.update_experiment(paths, cand["exp"], verdict="verifying")
    log(f"{cand['exp']} ({cand['agent']}): verifying on top of {branch} ({head[:10]}) in same-seed pairs with the head, "
        f"up to {st.repeats} ({', '.join(runs)})")


def queue_pairs(ctx: OrgContext, cand: dict[str, Any], head: str, commit: str, count: int, *, first: int,
                of: int) -> list[str]:
    """Queue `count` same-seed pairs (a run of the head, then one of the candidate's squashed commit, with one
    fresh seed) and start each pair's two workers together; returns the runs' ids."""
    cls = cand["slot_class"]
    runs = []
    seeds = fresh_seeds(ctx, workspace.tree_of(ctx.repo, commit), count, workspace.tree_of(ctx.repo, head))
    for i, seed in enumerate(seeds):
        pair = [experiments.queue_run(ctx, kind="verify", agent="gate", commit=sha, head=head,
                                      description=f"verify {cand['exp']} (pair {first + i}/{of}: {arm})", seed=seed,
                                      budget=ctx.task.budget[cls], slot_class=cls, candidate=cand["exp"])
                for sha, arm in ((head, "head"), (commit, "candidate"))]
        for exp in pair:
            executors.executor_for(ctx.spec).spawn_worker(ctx.paths, exp)
        runs += pair
    return runs


def decide(ctx: OrgContext, ver: dict[str, Any], log: Say) -> bool:
    """Judge a verification whose queued pairs have all landed: promote, reject, or queue its next look (False
    while runs are in flight)."""
    rows = [ledger.get_experiment(ctx.paths, e) for e in ver["runs"]]
    if any(r["verdict"] == executors.NODE_LOST for r in rows) and requeue_lost(ctx, ver, rows, log):
        return True
    pending = [r["exp"] for r in rows if r["verdict"] in ledger.UNFINISHED]
    cand = ledger.get_experiment(ctx.paths, ver["exp"])
    failed = [r for r in rows if r["verdict"] not in (*ledger.UNFINISHED, "ok")]
    if failed:
        r = failed[0]
        why = f"re-run {r['exp']} did not measure cleanly ({r['verdict']}; log {ctx.paths.runs / r['exp'] / 'log'})"
        executors.executor_for(ctx.spec).cancel_runs(ctx.paths, pending, "cancelled: the verification was decided")
        ledger.update_verification(ctx.paths, ver["id"], status="rejected", why=why, finished=clock.now_iso())
        _reject(ctx, cand, why, log)
        return True
    if pending:
        return set_aside_before_its_look(ctx, ver, cand, rows, log)
    if workspace.rev_parse(ctx.repo, branch_of(ctx, ver)) != ver["head"]:
        ledger.update_verification(ctx.paths, ver["id"], status="superseded", why="the program head moved",
                                   finished=clock.now_iso())
        ledger.update_experiment(ctx.paths, cand["exp"], verdict="candidate")
        log(f"{cand['exp']}: the program head moved during verification; it will be verified again")
        return True
    st = settings(ctx.spec)
    cls = cand["slot_class"]
    pairs = same_seed_pairs(rows, ver["head"])
    values = [c for _, c in pairs]
    runs_noise = noise(ctx.paths, cls)
    if ignores_seed(values, runs_noise):
        sigma = f"{runs_noise.sigma:.4g}" if runs_noise.sigma is not None else "?"
        why = (f"ignores its seed: {len(values)} re-runs on distinct seeds gave {ctx.task.metric} "
               f"{min(values):.6g}..{max(values):.6g}, far less spread than the org's noise (σ {sigma})")
        ledger.update_verification(ctx.paths, ver["id"], status="rejected", why=why, finished=clock.now_iso())
        _reject(ctx, cand, why, log)
        return True
    gains = [ctx.task.improvement(c, h) for h, c in pairs]
    head_mean = statistics.fmean(h for h, _ in pairs)
    noise_ = pair_noise_of(ctx, cls, gains, leave_out=ver["id"])
    min_gain = st.floor * abs(head_mean)
    verdict = paired_verdict(gains, noise_, st.z, st.repeats, min_gain)
    if verdict == "continue":
        rival = outranking(ctx, cand, gains)
        if rival is not None:
            ledger.update_verification(ctx.paths, ver["id"], status="paused",
                                       why=f"set aside after {len(pairs)} pairs for {rival['exp']}")
            ledger.update_experiment(ctx.paths, cand["exp"], verdict="candidate")
            log(f"{cand['exp']}: undecided after {len(pairs)} pairs; set aside for {rival['exp']} ({rival['agent']}), "
                f"whose run claims over {PREEMPT}x its gain: it goes on from here afterwards")
            return True
        due = (next_look(len(pairs), st.repeats) <= DUE_WITHIN_PAIRS
               and due_at_next_look(gains, noise_, st.z, st.repeats, min_gain))
        if len(pairs) >= YIELD_FROM_PAIRS and not due and (waiting := waiting_for_slots(ctx, cls, rows)):
            why = f"after {len(pairs)} pairs, the agents' runs queued before its look start first ({', '.join(waiting)})"
            if ver["why"] == why:
                return False
            ledger.update_verification(ctx.paths, ver["id"], why=why)
            log(f"{cand['exp']}: undecided {why}")
            return True
        more = queue_pairs(ctx, cand, ver["head"], ver["commit_sha"], next_look(len(pairs), st.repeats),
                           first=len(pairs) + 1, of=st.repeats)
        ledger.update_verification(ctx.paths, ver["id"], runs=[*ver["runs"], *more], why="")
        log(f"{cand['exp']}: undecided after {len(pairs)} pairs; queued {len(more) // 2} more"
            + (" (its gains so far would clear that look's bar)" if due else ""))
        return True
    mean = statistics.fmean(values)
    bar = promotion_bound(noise_, len(pairs), st.z, promoting_looks(st.repeats))
    width, sigma_d = (bar[0], bar[1].sigma) if bar else (None, None)
    numbers = dict(mean=mean, head_mean=head_mean, band=width, sigma=sigma_d)
    summary = (f"{ctx.task.metric} {mean:.6g} vs head {head_mean:.6g} over {len(pairs)} same-seed "
               f"pair{'s' if len(pairs) != 1 else ''}: "
               f"{mean - head_mean:+.4g}, needed {width or 0:.4g} (σ_d {sigma_d or 0:.4g})")
    if verdict == "reject":
        ledger.update_verification(ctx.paths, ver["id"], status="rejected", why=f"not confirmed: {summary}",
                                   finished=clock.now_iso(), **numbers)
        _reject(ctx, cand, f"not confirmed: {summary}", log)
        return True
    # The intent first, then the move, then the record: a gate that dies in between leaves a `promoting` row that
    # the guard takes for the gate's own move and the next step completes (never its own promotion reverted).
    ledger.update_verification(ctx.paths, ver["id"], status="promoting", why=summary, **numbers)
    return complete_promotion(ctx, {**ver, "status": "promoting", "why": summary, **numbers}, log)


def set_aside_before_its_look(ctx: OrgContext, ver: dict[str, Any], cand: dict[str, Any], rows: list[dict[str, Any]],
                              log: Say) -> bool:
    """While a look is in flight: when a waiting candidate outranks this one (its claim and its pairs so far, as
    at a look), the look's pairs that have not started are cancelled and it is set aside now rather than when the
    look lands. A pair is cancelled while neither arm has started its command (an arm holding a slot while it waits
    for the other's is cancelled too: in benchmarks/first_promotion.py such a pair had just taken both slots, and
    the win it was set aside for waited its whole run). Nothing of a cancelled pair was seen and the pairs done or
    running stand, so it goes on to the same look afterwards (resume_paused): no decision is made anywhere else.
    Returns whether it was set aside."""
    done = same_seed_pairs(rows, ver["head"])
    rival = outranking(ctx, cand, [ctx.task.improvement(c, h) for h, c in done])
    if rival is None:
        return False
    by_exp = {r["exp"]: r for r in rows}
    unstarted = [e for pair in zip(ver["runs"][0::2], ver["runs"][1::2], strict=False)
                 if all(by_exp[x]["verdict"] == "queued" for x in pair) for e in pair]
    cancelled = executors.executor_for(ctx.spec).cancel_runs(ctx.paths, unstarted,
                                                             f"cancelled: set aside for {rival['exp']}")
    if not cancelled:
        return False
    kept = [e for e in ver["runs"] if e not in cancelled]
    ledger.update_verification(ctx.paths, ver["id"], status="paused", runs=kept,
                               why=f"set aside after {len(done)} pairs for {rival['exp']}")
    ledger.update_experiment(ctx.paths, cand["exp"], verdict="candidate")
    log(f"{cand['exp']}: set aside after {len(done)} pairs for {rival['exp']} ({rival['agent']}), whose run claims "
        f"over {PREEMPT}x its gain; the pairs of its next look that had not started are cancelled "
        f"({', '.join(cancelled)}): it goes on to that look afterwards")
    return True


# The round a verification yields is every agent's run that was waiting for a slot when its look landed, not one
# round of as many as a pair takes slots: four agents on two slots keep four runs in line, and with one round of two
# the third and fourth waited out the whole next look. `DEPTH = 1` on nanochat, queued third in line at the look-4
# yield of a lucky `MATRIX_LR` claim (0.12 claimed, 0.06 over its pairs), started 10 minutes later, after all 8
# pairs of that verification (rejected) and the first pair of another: no promotion within 22 minutes of `up`
# (benchmarks/first_promotion.py --timeline). Three runs waiting on two slots left the second round's other slot
# to the pair's first arm, which held it idle for 71 s while an agent's proposal waited (the same benchmark).
def waiting_for_slots(ctx: OrgContext, cls: str, rows: list[dict[str, Any]]) -> list[str]:
    """Agents' runs on this slot class that were waiting for a slot when the look in `rows` landed and still are,
    for at most as many runs' lengths (budget and start-up) after it landed as the rounds they take on the class's
    slots: the next look waits for them. A last round they do not fill is filled by the runs queued next (before
    the last of them started), which would otherwise leave a slot idle while the look's pair waits for both."""
    landed = max(r["finished"] for r in rows)
    runs = [r for r in ledger.experiments(ctx.paths, kinds=("exp",))
            if r["slot_class"] == cls and not r["verdict"].startswith("cancelled")]
    waited = [r for r in runs if r["queued"] < landed and (not r["started"] or r["started"] >= landed)]
    width = max(1, len(class_slots(ctx.spec, cls)))
    rounds = -(-len(waited) // width)
    if clock.age_s(landed) > rounds * (ctx.task.budget[cls] + ctx.task.startup.get(cls, 0.0)):
        return []
    last = max(r["started"] for r in waited) if all(r["started"] for r in waited) else None
    fill = [r for r in runs if r["queued"] >= landed and (last is None or r["queued"] < last)]
    return [r["exp"] for r in waited + fill[:rounds * width - len(waited)] if r["verdict"] == "queued"]


def complete_promotion(ctx: OrgContext, ver: dict[str, Any], log: Say) -> bool:
    """Move the program branch to a verification recorded as `promoting` (compare-and-swap from its head) and
    record the promotion; also what finishes one whose gate died after recording the intent."""
    cand = ledger.get_experiment(ctx.paths, ver["exp"])
    branch = branch_of(ctx, ver)
    found = workspace.rev_parse(ctx.repo, branch)
    moved = found == ver["commit_sha"] or (
        found == ver["head"] and workspace.advance_branch(ctx.repo, branch, ver["commit_sha"], ver["head"]))
    if not moved:
        ledger.update_verification(ctx.paths, ver["id"], status="superseded", why="the program head moved",
                                   finished=clock.now_iso())
        ledger.update_experiment(ctx.paths, cand["exp"], verdict="candidate")
        return True
    ledger.update_verification(ctx.paths, ver["id"], status="promoted", finished=clock.now_iso())
    rows = [ledger.get_experiment(ctx.paths, e) for e in ver["runs"]]
    cls = cand["slot_class"]
    heldout = check_heldout(ctx, ver["head"], [r for r in rows if r["commit_sha"] != ver["head"]], cls,
                            noise(ctx.paths, cls).sigma)
    mean, head_mean = ver["mean"], ver["head_mean"]
    ledger.add_promotion(ctx.paths, exp=cand["exp"], agent=cand["agent"], old_head=ver["head"],
                         new_head=ver["commit_sha"], metric=mean, head_mean=head_mean, delta=mean - head_mean,
                         band=ver["band"], description=cand["description"], branch=ver.get("branch"),
                         **(heldout.columns() if heldout else {}))
    ledger.update_experiment(ctx.paths, cand["exp"], verdict="promoted")
    summary, held = ver["why"], describe(ctx, heldout)
    log(f"PROMOTED {cand['exp']} ({cand['agent']}: {cand['description']}): {summary}"
        f"{'; ' + held if held else ''}; {branch} is now {ver['commit_sha'][:10]}")
    announce_promotion(ctx, cand, ver["commit_sha"], summary, branch=branch, heldout=held,
                       heldout_worse=bool(heldout and heldout.worse))
    return True


def requeue_lost(ctx: OrgContext, ver: dict[str, Any], rows: list[dict[str, Any]], log: Say) -> bool:
    """Re-runs whose Ray node died under them are no verdict on the candidate: each is queued again (same commit,
    seed and arm) in its place, up to the verification's own size; returns whether any was."""
    lost = [r for r in rows if r["verdict"] == executors.NODE_LOST]
    before = sum(r["verdict"] == executors.NODE_LOST
                 for r in ledger.experiments(ctx.paths, kinds=("verify",)) if r["candidate"] == ver["exp"])
    if before > 2 * settings(ctx.spec).repeats:
        return False  # the cluster keeps losing them: decided as failed re-runs
    runs = list(ver["runs"])
    executor = executors.executor_for(ctx.spec)
    for r in lost:
        again = experiments.queue_run(ctx, kind="verify", agent="gate", commit=r["commit_sha"], head=r["head"],
                                      description=f"{r['description']} (again: {r['exp']} lost its node)",
                                      seed=r["seed"], budget=r["budget"], slot_class=r["slot_class"],
                                      candidate=r["candidate"])
        executor.spawn_worker(ctx.paths, again)
        runs[runs.index(r["exp"])] = again
        log(f"{r['exp']} lost its Ray node; queued {again} in its place")
    ledger.update_verification(ctx.paths, ver["id"], runs=runs)
    return True


def due_at_next_look(gains: list[float], estimates: tuple[Noise, ...], z: float, max_pairs: int,
                     min_gain: float) -> bool:
    """Would the next look promote if its pairs gained as these did, against σ_d's estimates as that look's pairs
    will leave them (their σ as it stands, their dof grown: gate.stats.bar_after)? Only schedules (whether the
    verification yields a round), never decides: the next look is judged on its own."""
    bar = bar_after(estimates, len(gains), next_look(len(gains), max_pairs), z, max_pairs)
    return bar is not None and statistics.fmean(gains) > max(bar[0], min_gain)


def next_look(pairs: int, max_pairs: int) -> int:
    """How many pairs to add to reach the next look."""
    return min(n for n in looks(max_pairs) if n > pairs) - pairs


def _reject(ctx: OrgContext, cand: dict[str, Any], why: str, log: Say) -> None:
    ledger.update_experiment(ctx.paths, cand["exp"], verdict=f"rejected: {why}"[:500])
    tell_claimant(ctx, cand, f"Your candidate {cand['exp']} ({cand['description']}) was rejected by the gate: {why}.")
    log(f"{cand['exp']} ({cand['agent']}): rejected, {why}")
