"""How far do simulated orgs scale? N agents x E experiments each on the synthetic task's simulated clock, through
the real ledger (SQLite, one transaction) and the gate's statistics and procedure (bench/sim.py), for growing N.

Prints, per size: wall time, runs (experiments, baselines, verification re-runs), runs per wall second, promotions,
the verified gain, simulated hours, and the share of screened candidates the gate got to verify. The goal: 1,000
agents x 20 experiments in under 120 s on 2 cores.

    .venv/bin/python benchmarks/sim_scale.py [--sizes 10,30,100,300,1000] [--experiments 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autoorg.bench.sim import SimOrg, SimSettings
from autoorg.experiments import ledger
from autoorg.gate.heads import GateSettings
from autoorg.paths import OrgPaths
from autoorg.spec import Gate, load_task
from autoorg.spec.processes import Baseline

ROOT = Path(__file__).resolve().parents[1]


def one(n: int, experiments: int, seed: int) -> dict[str, float]:
    task = load_task(ROOT / "examples" / "synthetic" / "task.yaml")
    gate = GateSettings(repeats=Gate().repeats, z=Gate().z, floor=Gate().floor, baseline_repeats=Baseline().repeats)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / ".autoorg" / "sim"
        home.mkdir(parents=True)
        paths = OrgPaths(home)
        settings = SimSettings(agents=n, experiments=experiments, slots=n, gate=gate, seed=seed)
        t0 = time.perf_counter()
        with ledger.batch(paths):
            result = SimOrg(paths, task, settings, source=ROOT).run()
        wall = time.perf_counter() - t0
        rows = ledger.experiments(paths)
        exps = [r for r in rows if r["kind"] == "exp"]
        screened = sum(r["verdict"] not in ("no gain", "same as head", "pending") for r in exps)
        verified = len(ledger.verifications(paths))
    gain = (result.start - result.best) if result.start is not None and result.best is not None else 0.0
    return {"wall": wall, "runs": len(rows), "exps": len(exps), "promotions": result.promotions, "gain": gain,
            "sim_h": result.simulated_s / 3600, "verified_share": verified / screened if screened else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100,300,1000")
    parser.add_argument("--experiments", type=int, default=20)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"simulated orgs, {args.experiments} experiments per agent, one slot per agent, default gate "
          f"(load {load:.1f} on {os.cpu_count()} cores)")
    print(f"{'agents':>7} {'wall s':>8} {'runs':>7} {'runs/s':>8} {'promoted':>8} {'gain':>8} {'sim h':>7} "
          f"{'verified/cand':>13}")
    per_run = []
    for n in (int(x) for x in args.sizes.split(",")):
        r = one(n, args.experiments, seed=n)
        per_run.append((n, r["wall"] / r["runs"]))
        print(f"{n:>7} {r['wall']:>8.1f} {r['runs']:>7} {r['runs'] / r['wall']:>8.0f} {r['promotions']:>8} "
              f"{r['gain']:>8.4f} {r['sim_h']:>7.2f} {r['verified_share']:>13.0%}", flush=True)
    costs = [c for _, c in per_run]
    print(f"wall time per run: {statistics.fmean(costs) * 1000:.2f} ms mean, "
          f"{costs[0] * 1000:.2f} ms at {per_run[0][0]} agents, {costs[-1] * 1000:.2f} ms at {per_run[-1][0]}")
    sys.exit(0)


if __name__ == "__main__":
    main()
