"""Time from `autoorg up` to every agent pane alive, and for `autoorg down`, for 8 and 32 `command` agents.

Runs the real CLI on a throwaway git repo and a private tmux server. Usage: python benchmarks/launch.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TASK = """name: tiny
editable: [tiny/train.py]
run: "{python} tiny/train.py"
metric: loss
budget: 10
"""


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "tiny").mkdir(parents=True)
    (repo / "tiny" / "task.yaml").write_text(TASK)
    (repo / "tiny" / "train.py").write_text("print('@metric {\"final\": true, \"loss\": 1.0}')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def cli(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoorg", *args], cwd=repo, env=env, capture_output=True,
                          text=True, check=True)


def all_alive(socket: str, n: int) -> bool:
    out = subprocess.run(["tmux", "-L", socket, "list-panes", "-a", "-F", "#{pane_dead} #{pane_current_command}"],
                         capture_output=True, text=True).stdout.split("\n")
    agents = [line for line in out if line.endswith(" sleep")]
    return len(agents) == n and all(line.startswith("0 ") for line in agents)


def one_round(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # late writers of a killed session
        repo = make_repo(Path(tmp))
        socket = f"bench-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "AUTOORG_TMUX_SOCKET": socket}
        try:
            start = time.perf_counter()
            cli(repo, env, "up", f"{n}xcpu", "--task", "tiny", "--backend", "command", "--command", "sleep 600",
                "--no-attach")
            deadline = time.monotonic() + 60
            while not all_alive(socket, n):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{n} agents not alive after 60 s")
                time.sleep(0.01)
            up_s = time.perf_counter() - start
            start = time.perf_counter()
            cli(repo, env, "down")
            down_s = time.perf_counter() - start
            return up_s, down_s
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# launch benchmark: {os.cpu_count()} CPUs, {args.repeats} repeats, median (min-max)")
    for n, goal in ((8, 3.0), (32, 10.0)):
        ups, downs = zip(*(one_round(n) for _ in range(args.repeats)), strict=True)
        up, down = statistics.median(ups), statistics.median(downs)
        verdict = "meets" if up < goal else "MISSES"
        print(f"{n:>3} agents: up -> all panes alive {up:.2f} s ({min(ups):.2f}-{max(ups):.2f}), "
              f"down {down:.2f} s ({min(downs):.2f}-{max(downs):.2f}); goal up < {goal:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
