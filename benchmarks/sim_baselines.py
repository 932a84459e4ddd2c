"""How many baseline runs (K) should a fresh org spend before it judges anything? The default org's shape (4 agents
sharing 2 slots) on the synthetic task's simulated clock (bench/sim.py: the real ledger, gate statistics and
procedure), from an empty ledger until the first verified promotion, for each K.

Prints, per K: the time to the first promotion in run lengths (a run's budget; on nanochat's CPU slots one is ~90 s
with evaluation) as median and quartiles over seeds, and how many orgs promoted nothing before the compute ran out.
The error rates at each K are simulated in tests/test_gate_stats.py.

    .venv/bin/python benchmarks/sim_baselines.py [--ks 8,4] [--seeds 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

from autoorg.bench.sim import SimOrg, SimSettings
from autoorg.experiments import ledger
from autoorg.gate.heads import GateSettings
from autoorg.paths import OrgPaths
from autoorg.spec import Gate, load_task

ROOT = Path(__file__).resolve().parents[1]
AGENTS, SLOTS = 4, 2  # the README's default org on a 2-core machine
RUN_LENGTHS = 40  # compute per org: this many run lengths on each slot


def first_promotion(k: int, seed: int) -> float | None:
    """Run lengths from the org's start to its first promotion (None: none within its compute)."""
    task = load_task(ROOT / "examples" / "synthetic" / "task.yaml")
    budget = task.budget["cpu"]
    gate = GateSettings(repeats=Gate().repeats, z=Gate().z, floor=Gate().floor, baseline_repeats=k)
    with tempfile.TemporaryDirectory() as tmp:
        paths = OrgPaths(Path(tmp) / ".autoorg" / "sim")
        paths.home.mkdir(parents=True)
        settings = SimSettings(agents=AGENTS, experiments=None, slots=SLOTS, gate=gate, seed=seed,
                               compute_limit_s=SLOTS * budget * RUN_LENGTHS)
        with ledger.batch(paths):
            SimOrg(paths, task, settings, source=ROOT).run()
        promotions = ledger.promotions(paths)
        if not promotions:
            return None
        start = min(datetime.fromisoformat(r["queued"]) for r in ledger.experiments(paths))
        return (datetime.fromisoformat(promotions[0]["ts"]) - start).total_seconds() / budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="8,4", help="baseline runs per new head to compare")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    print(f"first promotion of a fresh org: {AGENTS} agents on {SLOTS} slots, synthetic task, simulated clock, "
          f"{args.seeds} seeds per K")
    print(f"{'K':>3} {'median':>7} {'q1':>6} {'q3':>6} {'none':>5}   (run lengths from the start)")
    for k in (int(x) for x in args.ks.split(",")):
        times = [first_promotion(k, seed) for seed in range(args.seeds)]
        found = sorted(t for t in times if t is not None)
        q1, _, q3 = statistics.quantiles(found, n=4) if len(found) > 1 else (float("nan"),) * 3
        median = statistics.median(found) if found else float("nan")
        print(f"{k:>3} {median:>7.1f} {q1:>6.1f} {q3:>6.1f} {len(times) - len(found):>5}")


if __name__ == "__main__":
    main()
