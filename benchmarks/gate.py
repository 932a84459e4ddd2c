"""How often does the gate promote something it should not, and how often does it miss a real win?

Each round puts the program head back at the org's base, then plants, each from its own agent, through the real
runner, ledger, git and gate (the gate's runs are real detached workers). By default the org keeps its ledger from
round to round, as a running org does: σ, the pairs' σ_d and the base's K baseline runs carry over (`--cold` starts
every round from an empty ledger instead: independent rounds, each paying its own K baselines). A promoted win is a
new program head, as in a running org: before the round ends the gate gives it the runs it needs before anything
can be judged against it, and those count (`--reuse-head`: the win's tree is the same every round and its new
head is never baselined, the protocol of earlier figures). The plants:

  seed-only       the head's code again, with a new seed
  no-effect       an edit that changes nothing (a comment), a random seed
  lucky seed      the same no-effect edit run with a seed whose noise draw is ≤ -2σ (fishing for a win)
  protected       an edit to the protected landscape.py that makes the loss lower, queued around `exp run`'s
                  refusal (as if it had reached the ledger anyway)
  over budget     trains 1.6× the budget (more tokens, a better loss)
  3σ win          LEARNING_RATE moved so the noise-free loss drops by exactly 3σ — after the null kinds are decided

It reports the runs the gate spent per decision: every baseline and re-run it queued (cancelled ones included)
over the candidates it decided by verification.

    .venv/bin/python benchmarks/gate.py [--rounds 50] [--budget 0.1] [--sigmas 3] [--grace 30] [--cold] [--reuse-head]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from synthetic_org import (  # the benchmark helpers beside this one
    HEAD,
    LANDSCAPE,
    TRAIN,
    edit,
    git,
    load_landscape,
    make_synthetic_org,
    step_until,
    win_lr,
)

from autoorg import experiments, gate
from autoorg.errors import RunnerError
from autoorg.experiments import ledger
from autoorg.gate.verify import SCREEN_Z
from autoorg.paths import OrgPaths

KINDS = {"seed-only": "alice", "no-effect": "bob", "lucky seed": "carol", "protected": "dave",
         "over budget": "eve", "win": "frank"}
OPEN = (*ledger.UNFINISHED, "candidate", "verifying", "pending", "measured")


def reset(paths: OrgPaths, base: str, cold: bool) -> None:
    """A new round: the program head and every agent back at base, no runs left; `cold`: an empty ledger too."""
    if cold:
        for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "results.tsv"):
            (paths.home / name).unlink(missing_ok=True)
    elif (paths.home / "ledger.sqlite").exists():
        # the last round's promotion is taken back with the head (else the guard puts the promoted head back as
        # a move the gate did not make); every run, σ and the pairs' σ_d stay
        with sqlite3.connect(paths.home / "ledger.sqlite", timeout=30) as conn:
            conn.execute("DELETE FROM promotions")
    shutil.rmtree(paths.runs, ignore_errors=True)
    shutil.rmtree(paths.comms / "inbox", ignore_errors=True)
    git(paths.repo, "update-ref", "refs/heads/org/bench", base)
    for agent in KINDS.values():
        git(paths.worktree(agent), "reset", "-q", "--hard", base)


def one_round(paths: OrgPaths, land: Any, sigma: float, sigmas: float, lucky: int,
              new_head: str | None) -> dict[str, tuple[bool, bool, int]]:
    """One round; `new_head`: a mark that makes the win's tree new this round, and a promoted win's head gets its
    baseline runs before the round ends."""
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    k = gate.settings(ctx.spec).baseline_repeats
    step_until(paths, lambda: gate.head_stats(ctx, head, "cpu").n >= k)
    exps: dict[str, str] = {}

    def plant(kind: str) -> None:
        agent = KINDS[kind]
        worktree = paths.worktree(agent)
        seed = None
        if kind in ("no-effect", "lucky seed"):
            edit(worktree / TRAIN, "# Knobs", "# Knobs — tidied")
            seed = lucky if kind == "lucky seed" else None
        elif kind == "over budget":
            edit(worktree / TRAIN, "0.9 * args.budget", "1.6 * args.budget")
        elif kind == "protected":
            edit(worktree / LANDSCAPE, "loss = 1.0\n", f"loss = 1.0 - {10 * sigma}\n")
            try:
                experiments.queue_experiment(ctx, agent, "easier landscape")
                raise SystemExit("BUG: exp run accepted a protected edit")
            except RunnerError:
                pass
            git(worktree, "commit", "-qam", "easier landscape")
            exps[kind] = experiments.queue_run(ctx, kind="exp", agent=agent, commit=git(worktree, "rev-parse", "HEAD"),
                                          head=head, description="easier landscape", seed=experiments.new_seed(),
                                          budget=ctx.task.budget["cpu"], slot_class="cpu")
            gate.run_experiment(ctx, exps[kind])
            return
        elif kind == "win":
            mark = f"  # {new_head}" if new_head else ""
            edit(worktree / TRAIN, "LEARNING_RATE = 0.001", f"LEARNING_RATE = {win_lr(land, sigmas * sigma)!r}{mark}")
        exps[kind] = experiments.queue_experiment(ctx, agent, kind, seed=seed)
        gate.run_experiment(ctx, exps[kind])

    nulls = [k for k in KINDS if k != "win"]
    threads = [threading.Thread(target=plant, args=(kind,)) for kind in nulls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    step_until(paths, lambda: all(ledger.get_experiment(paths, exps[k])["verdict"] not in OPEN for k in nulls))
    plant("win")
    step_until(paths, lambda: ledger.get_experiment(paths, exps["win"])["verdict"] not in OPEN)
    if new_head and ledger.get_experiment(paths, exps["win"])["verdict"] == "promoted":
        promoted = experiments.load_context(paths).program_head()
        step_until(paths, lambda: gate.head_stats(ctx, promoted, "cpu").n >= gate.baseline_need(ctx, "cpu"))
    out = {}
    for kind, exp in exps.items():
        row = ledger.get_experiment(paths, exp)
        checks = ledger.verifications(paths, exp=exp)
        reruns = sum(ledger.get_experiment(paths, e)["verdict"] == "ok" for v in checks for e in v["runs"])
        out[kind] = (bool(checks), row["verdict"] == "promoted", reruns)
    return out


def lucky_seeds(land: Any, n: int, below: float) -> list[int]:
    seeds, seed = [], 1
    while len(seeds) < n:
        if land.noisy_loss(HEAD, 1e6, seed, 1.0) - land.expected_loss(HEAD, 1e6) <= -below:
            seeds.append(seed)
        seed += 1
    return seeds


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a rate k/n."""
    if n == 0:
        return 0.0, 1.0
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def report(tally: dict[str, list[int]], n: int, sigmas: float, gate_runs: int, baselines: int, runs: int,
           unclean: int, started: float) -> None:
    print(f"{'planted kind':<34} {'trials':>6} {'verified':>9} {'promoted':>9} {'re-runs/verified':>17}")
    labels = {"seed-only": "seed-only (head code, new seed)", "no-effect": "no-effect edit",
              "lucky seed": "no-effect edit, lucky seed (≤-2σ)", "protected": "protected file edited (bypass)",
              "over budget": "trains 1.6× the budget", "win": f"real win of {sigmas:g}σ"}
    for kind in KINDS:
        cand, promoted, reruns = tally[kind]
        per = f"{reruns / cand:.1f}" if cand else "-"
        print(f"{labels[kind]:<34} {n:>6} {cand:>9} {promoted:>9} {per:>17}")
    false = sum(tally[k][1] for k in KINDS if k != "win")
    trials = n * (len(KINDS) - 1)
    lo, hi = wilson(false, trials)
    print(f"\nfalse-promotion rate: {false}/{trials} = {100 * false / trials:.1f}% "
          f"(95% CI {100 * lo:.1f}–{100 * hi:.1f}%)")
    lucky = tally["lucky seed"]
    print(f"  of which, given the gate re-ran a no-effect candidate: {lucky[1] + tally['no-effect'][1]}/"
          f"{lucky[0] + tally['no-effect'][0]}")
    wins = tally["win"][1]
    lo, hi = wilson(wins, n)
    print(f"true-promotion rate for {sigmas:g}σ wins: {wins}/{n} = {100 * wins / n:.1f}% "
          f"(95% CI {100 * lo:.1f}–{100 * hi:.1f}%)")
    decided = sum(tally[k][0] for k in KINDS)
    per = f"{gate_runs / decided:.1f}" if decided else "-"
    print(f"gate runs (baselines and re-runs): {gate_runs} for {decided} decisions = {per} per decision "
          f"({baselines} baselines, {gate_runs - baselines} re-runs)")
    print(f"{runs} runs in {time.monotonic() - started:.0f}s; gate runs that did not measure cleanly: {unclean}")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--budget", type=float, default=0.1, help="seconds per run")
    parser.add_argument("--sigma", type=float, default=0.01, help="the synthetic task's noise")
    parser.add_argument("--sigmas", type=float, default=3.0, help="size of the planted win, in σ")
    parser.add_argument("--cold", action="store_true", help="an empty ledger every round (no history carried)")
    parser.add_argument("--reuse-head", action="store_true",
                        help="the same win every round, its promoted head never baselined (earlier figures)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="wall-clock seconds past the budget before a run is killed (its compute is judged on "
                             "CPU time; at load 25 on 2 cores an honest 0.1 s run can take 2 s of wall time)")
    args = parser.parse_args()
    land = load_landscape()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autoorg-bench-gate-", ignore_cleanup_errors=True) as tmp:
        paths, base = make_synthetic_org(Path(tmp), "bench", list(KINDS.values()), budget=args.budget,
                                         sigma=args.sigma, grace=args.grace)
        st = gate.settings(experiments.load_context(paths).spec)
        print(f"gate benchmark: synthetic task, σ {args.sigma}, budget {args.budget}s, K={st.baseline_repeats} "
              f"baseline runs, up to R={st.repeats} same-seed pairs, z={st.z} (screen z {SCREEN_Z}), "
              f"{args.rounds} rounds, {'an empty ledger each round' if args.cold else 'the ledger kept across rounds'}"
              f"{'' if args.reuse_head else ', each promoted head baselined'}", flush=True)
        tally = {kind: [0, 0, 0] for kind in KINDS}
        runs = unclean = gate_runs = baselines = 0
        for i, seed in enumerate(lucky_seeds(land, args.rounds, 2.0)):
            reset(paths, base, args.cold)
            seen = set() if args.cold else {r["exp"] for r in ledger.experiments(paths)}
            result = one_round(paths, land, args.sigma, args.sigmas, seed,
                               None if args.reuse_head else f"round {i + 1}")
            new = [r for r in ledger.experiments(paths) if r["exp"] not in seen]  # this round's runs
            gated = [r for r in new if r["kind"] in ("baseline", "verify")]
            runs += len(new)
            gate_runs += len(gated)
            baselines += sum(r["kind"] == "baseline" for r in gated)
            unclean += sum(not (r["verdict"] == "ok" or r["verdict"].startswith("cancelled")) for r in gated)
            for kind, (cand, promoted, reruns) in result.items():
                tally[kind][0] += cand
                tally[kind][1] += promoted
                tally[kind][2] += reruns
            if (i + 1) % 5 == 0 or i + 1 == args.rounds:  # a tally every 5 rounds: a long run cut short still reports
                print(f"  {i + 1} rounds, {runs} runs, {time.monotonic() - started:.0f}s", flush=True)
                report(tally, i + 1, args.sigmas, gate_runs, baselines, runs, unclean, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
