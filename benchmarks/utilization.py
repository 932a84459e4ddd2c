"""Slot utilization with agents that keep work queued, and the runner's own overhead per experiment.

An org of 8 CPU agents on the synthetic task (2 CPU slots on a 2-core machine), no panes and no daemon: each agent
is a loop of the real `autoorg exp submit` CLI that keeps two experiments queued (a knob changed each time); the
gate runs as each worker calls it after its result (its baseline and verification runs are experiments too and
count as work).

- utilization: slot-seconds spent running experiments (each run's process, spawn to exit, from result.json) over
  slot-seconds available, in the window where work was queued;
- overhead: from launching `autoorg exp run` to the run's first `@metric` line, minus any wait for a busy slot
  (the task's train.py is edited to print a metric line as soon as it starts).

    .venv/bin/python benchmarks/utilization.py [--seconds 60] [--budget 1.0] [--agents 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from synthetic_org import make_synthetic_org  # the benchmark helper beside this one

from autoorg.compute import slots
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.spec import AGENT_NAMES

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "examples/synthetic/train.py"
QUEUED = 2  # experiments each agent keeps submitted


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def exp_run(paths: OrgPaths, agent: str, message: str) -> tuple[float, str]:
    """One `autoorg exp run` from the agent's worktree; (launch time, experiment id)."""
    env = {**os.environ, "AUTOORG_AGENT": agent, "AUTOORG_HOME": str(paths.home)}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "autoorg", "exp", "run", "-m", message],
                          cwd=paths.worktree(agent), env=env, capture_output=True, text=True, timeout=600)
    match = re.match(r"(e\d+) ", proc.stdout)
    if not match:
        raise SystemExit(f"exp run failed: {proc.stderr.strip()}")
    return t0, match[1]


def exp_submit(paths: OrgPaths, agent: str, message: str) -> str:
    env = {**os.environ, "AUTOORG_AGENT": agent, "AUTOORG_HOME": str(paths.home)}
    proc = subprocess.run([sys.executable, "-m", "autoorg", "exp", "submit", "-m", message],
                          cwd=paths.worktree(agent), env=env, capture_output=True, text=True, timeout=600)
    match = re.match(r"(e\d+) submitted", proc.stdout)
    if not match:
        raise SystemExit(f"exp submit failed: {proc.stderr.strip()}")
    return match[1]


def result(paths: OrgPaths, exp: str) -> dict[str, Any]:
    return dict(json.loads((paths.runs / exp / "result.json").read_text()))


def set_decay(paths: OrgPaths, agent: str, rng: random.Random) -> float:
    path = paths.worktree(agent) / TRAIN
    value = round(rng.uniform(0.0, 0.5), 4)
    path.write_text(re.sub(r"(?m)^WEIGHT_DECAY = .*$", f"WEIGHT_DECAY = {value}", path.read_text()))
    return value


def overhead(paths: OrgPaths, n: int) -> tuple[list[float], list[float], list[float]]:
    """Uncontended single runs: launch → spawn and launch → first metric line, without slot waits."""
    agent = AGENT_NAMES[0]
    path = paths.worktree(agent) / TRAIN
    text = path.read_text()
    path.write_text(text.replace("import landscape  # noqa: E402\n",
                                 "import landscape  # noqa: E402\n\nprint('@metric {\"step\": 0}', flush=True)\n"))
    rng = random.Random(0)
    to_spawn, to_metric, task_start = [], [], []
    for _ in range(n):
        set_decay(paths, agent, rng)
        t0, exp = exp_run(paths, agent, "overhead probe")
        times = result(paths, exp)["times"]
        waited = times["leased"] - times["lease_wait"]
        to_spawn.append(times["spawned"] - t0 - waited)
        to_metric.append(times["first_metric"] - t0 - waited)
        task_start.append(times["first_metric"] - times["spawned"])
    path.write_text(text)
    return to_spawn, to_metric, task_start


def utilization(paths: OrgPaths, agents: int, seconds: float) -> dict[str, float]:
    stop = time.time() + seconds
    start = time.time()

    def loop(agent: str) -> None:
        """Keep QUEUED experiments of this agent submitted at all times (`exp submit`, as an agent that keeps
        thinking while its runs wait would): the slots, not the agents' own CPU time, set the pace."""
        rng = random.Random(agent)
        outstanding: list[str] = []
        while time.time() < stop:
            outstanding = [e for e in outstanding if ledger.get_experiment(paths, e)["verdict"] in ledger.UNFINISHED]
            if len(outstanding) >= QUEUED:
                time.sleep(0.1)
                continue
            value = set_decay(paths, agent, rng)
            outstanding.append(exp_submit(paths, agent, f"weight decay {value}"))

    threads = [threading.Thread(target=loop, args=(a,)) for a in AGENT_NAMES[:agents]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans: dict[str, list[tuple[float, float]]] = {}
    waits: list[tuple[float, float]] = []
    for folder in paths.runs.iterdir():
        if (folder / "result.json").is_file():
            r = result(paths, folder.name)
            t = r["times"]
            if r["slot"] and "spawned" in t and "exited" in t and t["spawned"] >= start:
                # the slot works for a run until its protected evaluator has measured it (a task with one)
                spans.setdefault(r["slot"], []).append((t["spawned"], t.get("measured", t["exited"])))
            if "lease_wait" in t and "leased" in t:
                waits.append((t["lease_wait"], t["leased"]))
    # The window: from the moment every slot has started its first run to the moment the agents stopped asking
    # for more (after that, queues drain and slots go idle by design).
    begin = max(min(s for s, _ in v) for v in spans.values())
    busy = sum(max(0.0, min(e, stop) - max(s, begin)) for v in spans.values() for s, e in v)
    available = len(slots.cpu_slots()) * (stop - begin)
    gaps = []
    for v in spans.values():
        v.sort()
        gaps += [b[0] - a[1] for a, b in zip(v, v[1:], strict=False) if a[1] >= begin and b[0] <= stop]
    # Idle slot time while some experiment was waiting for a slot: what the runner itself lost. (Idle time with
    # nobody waiting is the agents' and the machine's: on a loaded 2-core machine, start-up takes CPU too.)
    step = 0.005
    lost = 0.0
    for v in spans.values():
        t = begin
        while t < stop:
            running = any(s <= t < e for s, e in v)
            if not running and any(a <= t < b for a, b in waits):
                lost += step
            t += step
    return {"busy": busy, "available": available, "runs": sum(len(v) for v in spans.values()), "lost": lost,
            "gap_median_ms": 1000 * statistics.median(gaps) if gaps else 0.0,
            "gap_p90_ms": 1000 * sorted(gaps)[int(0.9 * (len(gaps) - 1))] if gaps else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the agents keep work queued")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per run")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--probes", type=int, default=8, help="uncontended runs for the overhead figure")
    args = parser.parse_args()
    cores = len(slots.cpu_slots())
    print(f"utilization benchmark: synthetic task, budget {args.budget:g}s, {args.agents} agents on {cores} CPU "
          f"slots, {args.seconds:g}s of queued work", flush=True)
    with tempfile.TemporaryDirectory(prefix="autoorg-bench-util-", ignore_cleanup_errors=True) as tmp:
        paths, _ = make_synthetic_org(Path(tmp), "util", AGENT_NAMES[:args.agents], budget=args.budget)
        to_spawn, to_metric, task_start = overhead(paths, args.probes)
        print(f"runner overhead per experiment ({args.probes} uncontended runs, slot waits excluded):")
        print(f"  `autoorg exp run` launched → task process spawned: median {statistics.median(to_spawn):.3f}s "
              f"(max {max(to_spawn):.3f}s)")
        print(f"  `autoorg exp run` launched → first @metric line:  median {statistics.median(to_metric):.3f}s "
              f"(max {max(to_metric):.3f}s), of which the task's own start-up {statistics.median(task_start):.3f}s")
        u = utilization(paths, args.agents, args.seconds)
        deadline = time.monotonic() + 120  # let the gate's last runs finish before the folder goes
        while any(r["verdict"] in ledger.UNFINISHED for r in ledger.experiments(paths)) and time.monotonic() < deadline:
            time.sleep(0.5)
    print(f"slot utilization: {100 * u['busy'] / u['available']:.1f}% ({u['busy']:.1f} slot-seconds running "
          f"experiments of {u['available']:.1f} available; {u['runs']:.0f} runs; gap between runs on a slot: median "
          f"{u['gap_median_ms']:.0f} ms, p90 {u['gap_p90_ms']:.0f} ms)")
    print(f"  while an experiment was waiting for a slot: {100 * u['busy'] / (u['busy'] + u['lost']):.1f}% "
          f"(slots idle with work waiting: {u['lost']:.2f} slot-seconds); load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
