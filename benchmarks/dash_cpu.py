"""The dashboard's own CPU on a 32-agent org: what a person's `autoorg dash` costs while it sits open.

A real headless org (32 live agents, its daemon), a ledger of 200 finished runs, one running experiment per agent
streaming a loss curve, verifications in flight, a board with posts. The dashboard (the same `make_app` the CLI
runs, headless at 240x64) refreshes every `--refresh` seconds for `--seconds`; its CPU is this process's user+system
time plus that of the git calls it reaps, over the wall time. The terminal's own drawing is not included.

    .venv/bin/python benchmarks/dash_cpu.py [--agents 32] [--seconds 30] [--refresh 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from autoorg import comms
from autoorg.daemon.notify import Notice, add_notice
from autoorg.dash import make_app
from autoorg.experiments import ledger
from autoorg.org import build_org, plan_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session
from autoorg.testing import make_repo


def add_run(paths: OrgPaths, agent: str, n: int, **fields: object) -> str:
    exp = ledger.add_experiment(paths, {
        "kind": "exp", "agent": agent, "task": "tiny", "commit_sha": f"{n:040x}", "tree": f"{n:040x}",
        "head": "0" * 40, "description": f"idea {n}", "seed": n, "budget": 60.0, "standard": 1, "slot_class": "cpu"})
    ledger.update_experiment(paths, exp, **fields)
    return exp


def populate(paths: OrgPaths, agents: list[str]) -> list[Path]:
    """Fill the org; returns the metrics file of each agent's running experiment."""
    live = []
    for n in range(200):
        add_run(paths, agents[n % len(agents)], n, verdict="discarded" if n % 7 else "candidate",
                metric=1.0 - n / 1000, delta=0.01 - n / 10000, wall_s=60.0,
                finished=f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000000Z")
    for i, agent in enumerate(agents):
        exp = add_run(paths, agent, 1000 + i, verdict="running")
        (paths.runs / exp).mkdir(parents=True, exist_ok=True)
        live.append(paths.runs / exp / "metrics.jsonl")
        live[-1].write_text("".join(
            json.dumps({"step": s, "train_loss": 2.0 / (1 + s / 100)}) + "\n" for s in range(0, 3000, 10)))
    for k in range(3):
        runs = [add_run(paths, "gate", 2000 + 3 * k + j, kind="verify", verdict="queued") for j in range(3)]
        ledger.add_verification(paths, exp=f"e{k + 1:04d}", head="0" * 40, runs=runs, status="running")
    for n in range(30):
        comms.post_board(paths, agents[n % len(agents)], f"post {n}: what I learnt about the schedule")
    for n in range(20):  # the daemon's notifications line
        add_notice(paths, Notice(ts="2026-01-01T00:00:00.000000Z", org=paths.tag, agent=agents[n % len(agents)],
                                 reason="waiting", text="is waiting for input: permission prompt", key=f"bench:{n}"))
    return live


def advance(live: list[Path], step: int) -> None:
    for path in live:
        with path.open("a") as fh:
            fh.write(json.dumps({"step": step, "train_loss": 2.0 / (1 + step / 100)}) + "\n")


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measure(paths: OrgPaths, seconds: float, refresh: float,
                  live: list[Path] | None = None) -> tuple[float, float, int]:
    app = make_app(paths, refresh_s=refresh)
    draws = 0
    async with app.run_test(size=(240, 64)) as pilot:
        while app.snapshot is None:  # the first draw (start-up is not what a person pays for each minute)
            await pilot.pause(0.05)
        first = app.snapshot
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        seen = first
        while time.monotonic() - wall0 < seconds:
            await pilot.pause(0.25)
            if app.snapshot is not seen:
                seen, draws = app.snapshot, draws + 1
                if live:  # the runs move on before the next refresh (their writes are not the dashboard's CPU)
                    cpu_before = cpu_seconds()
                    advance(live, 3000 + 10 * draws)
                    cpu0 += cpu_seconds() - cpu_before
        return cpu_seconds() - cpu0, time.monotonic() - wall0, draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--refresh", type=float, default=2.0)
    parser.add_argument("--live", action="store_true", help="every run writes a loss line between refreshes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo")
        plan = plan_org(f"{args.agents}xcpu", repo=repo, task="tiny", backend="command", command="sleep 86400",
                        runtime="headless")
        state = build_org(plan)
        try:
            live = populate(plan.paths, list(state.agents))
            cpu, wall, draws = asyncio.run(measure(plan.paths, args.seconds, args.refresh,
                                                   live if args.live else None))
        finally:
            open_session(plan.paths, state).stop()
    print(f"dashboard, {args.agents} agents{', all live' if args.live else ', quiet'}, refresh every {args.refresh:g}s: {cpu:.2f} CPU s over {wall:.1f} s "
          f"= {100 * cpu / wall:.1f}% of a core ({draws} refreshes, {1000 * cpu / max(draws, 1):.0f} ms each)")


if __name__ == "__main__":
    main()
