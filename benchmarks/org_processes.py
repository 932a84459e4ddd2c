"""What the daemon's two org-code processes cost per tick: the stop rules' progress read from a big ledger, and the
hot-reload check (resolve the org's code and hash it).

A ledger of `--experiments` finished runs from `--agents` agents (a third crashed), five rules (two per agent); the
bundled prompts and skills for the reload check. CPU is this process's user+system time.

    .venv/bin/python benchmarks/org_processes.py [--experiments 10000] [--agents 32]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from autoorg import orgcode
from autoorg.daemon.reload import RELOAD_EVERY_S
from autoorg.daemon.rules import RULES_EVERY_S
from autoorg.experiments import ledger, stop_rules
from autoorg.paths import OrgPaths
from autoorg.spec import StopRule

RULES = (StopRule("max_experiments", 10**6), StopRule("max_experiments", 500, per="agent"), StopRule("plateau", 50),
         StopRule("crash_rate", 0.5, window=10, per="agent"), StopRule("max_cost_usd", 5.0))


def cpu_ms_per_call(call: object, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.process_time() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = OrgPaths(Path(tmp) / ".autoorg" / "bench")
        paths.home.mkdir(parents=True)
        ledger.exp_outcomes(paths)  # creates the ledger
        rows = [(f"a{i % args.agents}", "crash: bench" if i % 3 == 0 else "rejected", f"2026-11-30T{i:08d}")
                for i in range(args.experiments)]
        with sqlite3.connect(paths.ledger) as conn:
            conn.executemany("INSERT INTO experiments (kind, agent, task, commit_sha, tree, head, seed, budget, "
                             "standard, slot_class, verdict, queued, finished) VALUES ('exp', ?, 't', 'c', 't', 'h', "
                             "1, 1, 1, 'cpu', ?, '2026', ?)", rows)
        agents = [f"a{i}" for i in range(args.agents)]
        rules_ms = cpu_ms_per_call(lambda: stop_rules.progress(paths, RULES, agents), 10)
        print(f"stop rules: {rules_ms:.1f} ms CPU per tick ({args.experiments} experiments, {args.agents} agents, "
              f"{len(RULES)} rules) = {rules_ms / RULES_EVERY_S / 10:.2f}% of a core at one tick per "
              f"{RULES_EVERY_S:g} s")
        repo = Path(tmp) / "research"
        prompts = ["prompts/researcher.md", "prompts/chief.md"]
        reload_ms = cpu_ms_per_call(lambda: orgcode.resolve(repo, prompts).hash, 200)
        print(f"reload check: {reload_ms:.2f} ms CPU per tick (bundled prompts and skills) = "
              f"{reload_ms / RELOAD_EVERY_S / 10:.3f}% of a core at one tick per {RELOAD_EVERY_S:g} s")


if __name__ == "__main__":
    main()
