"""What a run costs the machine beyond its own training: one bench cell of the bundled topologies suite (an org of
offline agents on the synthetic task, whose training sleeps) on an otherwise idle machine, its whole CPU (every
process: the org's agents, daemon, workers, sealed runs, git, and the kernel's share, from /proc/stat) over the
runs in its ledger. The bundled suite is CPU-bound on 2 cores, so this is what sets its length.

    .venv/bin/python benchmarks/run_cpu.py [--org chief] [--slot-minutes 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from autoorg.bench.cell import TAG, cell_dir

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "examples" / "bench" / "topologies.yaml"


def machine_cpu_s() -> float:
    """user + nice + system + irq + softirq seconds of every CPU since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--org", default="chief", help="an org of the bundled suite (default chief)")
    parser.add_argument("--slot-minutes", type=float, default=None, help="the cell's budget (default: the suite's)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    raw = yaml.safe_load(SUITE.read_text())
    raw.update(name="run-cpu", repeats=1, parallel=1)
    if args.slot_minutes is not None:
        raw["budget"] = {"slot_minutes": args.slot_minutes}
    with tempfile.TemporaryDirectory(dir=SUITE.parent, prefix=".run-cpu-") as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(yaml.safe_dump(raw))
        out = Path(tmp) / "out"
        before, start = machine_cpu_s(), time.monotonic()
        subprocess.run([sys.executable, "-m", "autoorg.bench", str(suite), str(out), args.org, "synthetic",
                        str(args.repeat)], check=True, stdout=subprocess.DEVNULL)
        cpu, wall = machine_cpu_s() - before, time.monotonic() - start
        db = cell_dir(out, args.org, "synthetic", args.repeat) / "repo" / ".autoorg" / TAG / "ledger.sqlite"
        with sqlite3.connect(db) as conn:
            runs = conn.execute("SELECT COUNT(*) FROM experiments WHERE cpu_s IS NOT NULL").fetchone()[0]
            kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM experiments GROUP BY kind").fetchall())
    print(f"{args.org} (r{args.repeat}, {raw['budget']['slot_minutes']:g} slot-minutes): {wall:.0f} s wall, "
          f"{cpu:.1f} CPU-s on the machine, {runs} runs measured ({', '.join(f'{v} {k}' for k, v in kinds.items())})"
          f" = {cpu / max(runs, 1):.2f} CPU-s per run")


if __name__ == "__main__":
    main()
