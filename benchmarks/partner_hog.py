"""What a run gains by working on its same-seed partner's core, and what the harness does about it.

A verification's pair trains the head and the candidate at once, on neighbouring cores, each for a wall-clock
budget. A candidate whose training starts a helper that spins part of the time on the other core takes CPU from
the head it is compared with; its own process tree's CPU-s can stay inside the task's start-up allowance (nanochat:
60 + 30 CPU-s), so the budget check does not see it.

    python benchmarks/partner_hog.py                  # 30 s runs, a helper spinning a third of the time
    python benchmarks/partner_hog.py --budget 60 --duty 0.5 --seeds 2

Part 1 (no harness): nanochat's train.py twice at once, pinned to two cores, on one seed, with and without the
helper; prints each side's steps and val_bpb (train.py's own evaluation). Part 2: the same helper under autoorg's
runner (`process.run_command` pinned to one core, judged by `run.judge_outcome`): the verdict, and how long the run
lived before it was killed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from autoorg.experiments import process, run
from autoorg.spec import load_task

REPO = Path(__file__).resolve().parent.parent
HOG = """\
import os, sys, time
os.sched_setaffinity(0, (int(sys.argv[1]),))
duty, parent = float(sys.argv[2]), os.getppid()
while os.getppid() == parent:  # until the training that started it ends
    start = time.monotonic()
    while time.monotonic() - start < 0.1 * duty:
        pass
    time.sleep(0.1 * (1 - duty))
"""
# the candidate's training: start the helper, then train as train.py does
CHEATER = """\
import runpy, subprocess, sys
subprocess.Popen([sys.executable, "-c", {hog!r}, "{core}", "{duty}"])
sys.path.insert(0, {nanochat!r})
sys.argv = [{train!r}, *sys.argv[1:]]
runpy.run_path({train!r}, run_name="__main__")
"""


def cheater(core: int, duty: float) -> str:
    return CHEATER.format(hog=HOG, core=core, duty=duty, nanochat=str(REPO / "nanochat"),
                          train=str(REPO / "nanochat" / "train.py"))


def train_args(budget: float, seed: int) -> list[str]:
    return ["--preset", "cpu", "--budget", f"{budget:g}", "--seed", str(seed)]


def final(output: str) -> dict:
    lines = [ln for ln in output.splitlines() if ln.startswith("@metric ") and '"final": true' in ln]
    return json.loads(lines[-1][len("@metric "):]) if lines else {}


def pinned(argv: list[str], core: int) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, (core,)))  # noqa: PLW1509 - a syscall


def pair(budget: float, seed: int, duty: float, cores: tuple[int, int]) -> tuple[dict, dict]:
    """(the candidate's final line, its partner's) for one pair trained at once."""
    mine, theirs = cores
    candidate = ([sys.executable, "-c", cheater(theirs, duty)] if duty > 0
                 else [sys.executable, str(REPO / "nanochat" / "train.py")]) + train_args(budget, seed)
    partner = [sys.executable, str(REPO / "nanochat" / "train.py"), *train_args(budget, seed)]
    procs = [pinned(candidate, mine), pinned(partner, theirs)]
    outputs = [p.communicate()[0] for p in procs]
    return final(outputs[0]), final(outputs[1])


def under_the_runner(budget: float, duty: float, cores: tuple[int, int]) -> tuple[str, float]:
    mine, theirs = cores
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "cheat.py").write_text(cheater(theirs, duty))
        (folder / "task.yaml").write_text(f"name: t\neditable: [cheat.py]\nrun: x\nmetric: val_bpb\nbudget: {budget}\n"
                                          "startup: 30\ngrace: 240\n")
        out = process.run_command(f"{sys.executable} cheat.py {' '.join(train_args(budget, 0))}", cwd=folder,
                                  env=dict(os.environ), limit_s=budget + 240, log_path=folder / "log",
                                  metrics_path=folder / "metrics.jsonl", cores=(mine,))
        verdict = run.judge_outcome(load_task(folder / "task.yaml"), out, budget, True, "exp", "cpu", 1)[0]
        return verdict, out.wall_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--duty", type=float, default=1 / 3, help="share of the time the helper spins")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("partner_hog.py: needs two cores (a pair's two slots)")
    two = (cores[0], cores[1])
    print(f"a same-seed pair of nanochat cpu runs ({args.budget:g} s) on cores {two[0]} and {two[1]}; the candidate "
          f"on {two[0]} with and without a helper spinning {args.duty:.0%} of the time on {two[1]}")
    print(f"{'seed':>4} {'helper':>6}  {'candidate steps':>15} {'val_bpb':>8}  {'partner steps':>13} {'val_bpb':>8}")
    for seed in range(args.seeds):
        for duty in (0.0, args.duty):
            cand, partner = pair(args.budget, seed, duty, two)
            print(f"{seed:>4} {'yes' if duty else 'no':>6}  {cand.get('steps', '-'):>15} "
                  f"{cand.get('val_bpb', float('nan')):>8.4f}  {partner.get('steps', '-'):>13} "
                  f"{partner.get('val_bpb', float('nan')):>8.4f}", flush=True)
    verdict, lived = under_the_runner(args.budget, args.duty, two)
    print(f"under autoorg's runner, pinned to core {two[0]}: {verdict}\n  (killed after {lived:.1f} s of a "
          f"{args.budget:g} s budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
