"""Message delivery figures for the daemon, on a real org (private tmux server, real daemon, real inotify).

1. latency: a message file written → its doorbell visible in the agent's pane, over N messages (p50, p99);
2. throughput: A agents × M messages each through one daemon: total time until every message was read, and the
   daemon's CPU seconds.

Agents are small real processes that report idle through `autoorg.comms` in-process (not the `autoorg hook` CLI,
whose interpreter start-up would dominate) and read their inbox when the doorbell says so.

    .venv/bin/python benchmarks/comms_latency.py [--messages 200] [--agents 64] [--per-agent 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from autoorg import comms
from autoorg.paths import OrgPaths, org_paths
from autoorg.runtime import tmux

AGENT = """
import os, sys
from pathlib import Path
from autoorg import comms
from autoorg.paths import OrgPaths
paths, agent = OrgPaths(Path(os.environ["AUTOORG_HOME"])), os.environ["AUTOORG_AGENT"]
comms.report_status(paths, agent, "idle")
for raw in sys.stdin:
    line = raw.strip()
    if not line:
        continue
    if "autoorg inbox" in line:
        comms.mark_read(paths, agent, comms.read_inbox(paths, agent))
    comms.report_status(paths, agent, "idle")
"""

IDLE_S = 10.0
TASK = """name: tiny
editable: [tiny/train.py]
run: "{python} tiny/train.py"
metric: {name: loss, direction: minimize}
budget: 10
"""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.005):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_repo(root: Path, agent_script: Path) -> Path:
    repo = root / "repo"
    (repo / "tiny").mkdir(parents=True)
    (repo / "tiny" / "task.yaml").write_text(TASK)
    (repo / "tiny" / "train.py").write_text('print("@metric {\\"final\\": true, \\"loss\\": 1.0}")\n')
    agent_script.write_text(AGENT)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def up(repo: Path, preset: str, agent_script: Path) -> OrgPaths:
    proc = subprocess.run([sys.executable, "-m", "autoorg", "up", preset, "--task", "tiny", "--no-attach",
                           "--command", f"{sys.executable} {agent_script}"], cwd=repo, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"up failed: {proc.stderr}")
    return org_paths(repo, preset)


def daemon_pid(paths: OrgPaths) -> int:
    """The org's live daemon (a lock left by an earlier org of the same tag names a process that is gone)."""
    def live() -> int | None:
        lock = paths.locks / "daemon.lock"
        text = lock.read_text().strip() if lock.exists() else ""
        return int(text) if text.isdigit() and Path(f"/proc/{text}/stat").exists() else None
    return int(wait_for(live, 60, "the daemon"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_idle(paths: OrgPaths, agents: list[str]) -> bool:
    return all((comms.read_status(paths, a) or {}).get("state") == "idle" for a in agents)


def latency(repo: Path, socket: str, n: int, agent_script: Path) -> list[float]:
    paths = up(repo, "2xcpu", agent_script)
    pid = daemon_pid(paths)
    wait_for(lambda: all_idle(paths, ["alice", "bob"]), 60, "agents idle", 0.05)
    pane = wait_for(lambda: next((p for p, s in (tmux.pane_states(socket, "autoorg-2xcpu") or {}).items()
                                  if s.agent == "alice"), None), 30, "alice's pane")
    times = []
    for i in range(n):
        wait_for(lambda: all_idle(paths, ["alice"]), 30, "alice idle")
        body = f"latency probe {i:04d} {uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        comms.send_message(paths, sender="human", to="alice", kind="note", body=body)
        wait_for(lambda b=body: any(b in line for line in (tmux.input_view(socket, pane) or
                                                            tmux.InputView((), 0, 0, False, False)).lines),
                 30, f"message {i} in the pane", interval=0.002)
        times.append(time.perf_counter() - start)
    subprocess.run([sys.executable, "-m", "autoorg", "down", "--tag", "2xcpu"], cwd=repo, capture_output=True)
    wait_for(lambda: not Path(f"/proc/{pid}/stat").exists(), 60, "the daemon to stop")
    return times


def throughput(repo: Path, agents: int, per_agent: int, agent_script: Path) -> dict[str, float]:
    preset = f"{agents}xcpu"
    started = time.perf_counter()
    paths = up(repo, preset, agent_script)
    pid = daemon_pid(paths)
    names = comms.roster(paths).agents
    wait_for(lambda: all_idle(paths, names), 300, f"{agents} agents idle", 0.2)
    ready = time.perf_counter() - started
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for _ in range(per_agent):
        for name in names:
            comms.send_message(paths, sender="human", to=name, kind="note", body=f"work item for {name}")
    written = time.perf_counter() - t0

    def drained() -> bool:
        return all(not comms.unread_files(paths, a) for a in names) and all_idle(paths, names)

    wait_for(drained, 600, "every message read", 0.1)
    total = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    rings = (paths.logs / "daemon.log").read_text().count(": rang: ")
    time.sleep(2.0)
    idle0 = cpu_seconds(pid)
    time.sleep(IDLE_S)  # what the daemon costs while nothing happens (the gate's start-up baselines are done)
    idle_cpu = cpu_seconds(pid) - idle0
    subprocess.run([sys.executable, "-m", "autoorg", "down", "--tag", preset], cwd=repo, capture_output=True)
    return {"ready": ready, "written": written, "total": total, "cpu": cpu, "rings": rings,
            "messages": agents * per_agent, "idle_cpu": idle_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--per-agent", type=int, default=50)
    args = parser.parse_args()
    socket = f"autoorg-bench-{uuid.uuid4().hex[:8]}"
    os.environ["AUTOORG_TMUX_SOCKET"] = socket
    for var in ("AUTOORG_HOME", "AUTOORG_AGENT", "TMUX"):
        os.environ.pop(var, None)
    root = Path(tempfile.mkdtemp(prefix="autoorg-bench-"))
    try:
        agent_script = root / "agent.py"
        repo = make_repo(root, agent_script)
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        times = latency(repo, socket, args.messages, agent_script)
        ms = sorted(t * 1000 for t in times)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        print(f"latency, file written -> doorbell visible in the pane, {len(ms)} messages: "
              f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms "
              f"(goal: p50 < 100 ms, p99 < 500 ms)")
        r = throughput(repo, args.agents, args.per_agent, agent_script)
        print(f"throughput, {args.agents} agents x {args.per_agent} messages = {r['messages']:.0f} through one "
              f"daemon: all read {r['total']:.1f} s after the first write (writing took {r['written']:.1f} s); "
              f"{r['rings']:.0f} doorbells; daemon CPU {r['cpu']:.1f} s (org ready in {r['ready']:.1f} s)")
        print(f"idle, {args.agents} agents and no messages: daemon CPU {r['idle_cpu']:.2f} s over {IDLE_S:.0f} s")
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
