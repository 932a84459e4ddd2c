"""The bundled topologies side by side, offline: each started by `autoorg up NAME:N --headless --backend heuristic`
on the synthetic task in a fresh repo, run for the same wall time, then stopped. Prints, per topology, what its
roles did and what it achieved: experiments, ideas closed, reviews, verified promotions and the program head's
noise-free loss (the task's hidden truth at 1e6 tokens, so noise cannot flatter an org).

    python benchmarks/topologies.py [--seconds 120] [--agents 2] [--budget 0.3] [--only queue,review]

A figure from a loaded 2-core machine says little about the topologies themselves; it shows that each runs and
what its roles do per minute. Compare them on a quiet machine with more time and several repeats.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic_org import (  # the benchmark helpers beside this one
    LANDSCAPE,
    ROOT,
    TRAIN,
    load_landscape,
    synthetic_repo,
)

from autoorg import comms, workspace
from autoorg.agents.researcher import read_knobs
from autoorg.experiments import ledger
from autoorg.paths import org_paths
from autoorg.spec import load_task

TOPOLOGIES = ("solo", "independent", "chief", "queue", "review", "islands")


def autoorg(repo: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=repo, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"autoorg {' '.join(args)}: {proc.stderr.strip()}")


def run_one(name: str, agents: int, seconds: float, budget: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"autoorg-topo-{name}-") as tmp:
        repo = synthetic_repo(Path(tmp), budget=budget)
        # islands:N puts N on each of its two islands: the same number of agents as the others' N
        target = name if name == "solo" else f"{name}:{max(1, agents // 2) if name == 'islands' else agents}"
        autoorg(repo, "up", target, "--tag", name, "--task", "synthetic", "--backend", "heuristic", "--headless")
        try:
            time.sleep(seconds)
        finally:
            autoorg(repo, "down", "--tag", name)
        paths = org_paths(repo, name)
        rows = ledger.experiments(paths, kinds=("exp",))
        knobs = load_task(repo / "examples/synthetic/task.yaml").knobs
        land = load_landscape()
        branches = [f"org/{name}", *(f"org/{name}.island.{i}" for i in ("east", "west") if name == "islands")]
        loss = min(land.expected_loss(read_knobs(workspace.read_file_at(repo, workspace.rev_parse(repo, b), TRAIN)
                                                 or "", knobs), 1e6) for b in branches)
        reviews = ledger.reviews(paths)
        return {"topology": target, "experiments": len(rows),
                "ideas done": len(comms.list_ideas(paths, "done")),
                "reviews (refused)": f"{len(reviews)} ({sum(r['decision'] == 'refuse' for r in reviews)})",
                "promotions": len(ledger.promotions(paths)),
                "migrations": len(ledger.island_migrations(paths)),
                "head loss": f"{loss:.4f}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0, help="wall time each org runs")
    p.add_argument("--agents", type=int, default=2, help="team size N (up NAME:N)")
    p.add_argument("--budget", type=float, default=0.3, help="seconds per experiment")
    p.add_argument("--only", help="comma-separated topologies (default: all)")
    args = p.parse_args()
    names = args.only.split(",") if args.only else TOPOLOGIES
    start = read_knobs((ROOT / TRAIN).read_text(), load_task(ROOT / "examples/synthetic/task.yaml").knobs)
    start_loss = load_landscape().expected_loss(start, 1e6)
    print(f"{args.seconds:g}s each, N={args.agents}, budget {args.budget:g}s; head loss: the program head's "
          f"knobs in {LANDSCAPE} without noise, at 1e6 tokens (the start: {start_loss:.4f})")
    results = [run_one(name, args.agents, args.seconds, args.budget) for name in names]
    columns = list(results[0])
    print(" | ".join(columns))
    for r in results:
        print(" | ".join(str(r[c]) for c in columns))


if __name__ == "__main__":
    main()
