"""The Textual dashboard, driven with Pilot against a real org (tmux, git, ledger) and saved as an SVG."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from autoorg.dash import make_app
from autoorg.dash.data import take_snapshot
from autoorg.org import build_org, plan_org
from autoorg.runtime import tmux
from tests.conftest import retry_until


def run_experiment(paths_home: Path, agent: str, worktree: Path) -> None:
    (worktree / "tiny" / "train.py").write_text((worktree / "tiny" / "train.py").read_text().replace("X = 1.0", "X = 0.5"))
    env = {"AUTOORG_HOME": str(paths_home), "AUTOORG_AGENT": agent, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "autoorg", "exp", "run", "-m", "lower X"], cwd=worktree,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dashboard_shows_agents_and_results_and_jumps_to_a_pane(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    paths = plan.paths
    run_experiment(paths.home, "alice", paths.worktree("alice"))
    snap = take_snapshot(paths)
    assert [a.name for a in snap.agents] == ["alice", "bob"]
    alice = snap.agents[0]
    assert alice.exp and alice.loss == "0.5000"
    assert snap.metric == "loss" and snap.direction == "minimize"

    async def drive() -> str:
        app = make_app(paths, refresh_s=0.5)
        async with app.run_test(size=(160, 40)) as pilot:
            for _ in range(100):
                if app.snapshot is not None:
                    break
                await pilot.pause(0.05)
            assert app.snapshot is not None
            table = app.query_one("#agents")
            assert table.row_count == 2  # type: ignore[attr-defined]
            await pilot.press("down", "enter")  # bob
            await pilot.pause(0.2)
            return str(app.export_screenshot())

    svg = asyncio.run(drive())
    (tmp_path / "dash.svg").write_text(svg)
    for text in ("alice", "bob", "org/2xcpu", "0.5000", "latest results"):
        assert text in svg.replace("&#160;", " "), text
    bob_pane = state.agents["bob"].pane
    active = retry_until(lambda: subprocess.run(
        ["tmux", "-L", tmux_socket, "display-message", "-p", "-t", state.windows["org"], "#{pane_id}"],
        capture_output=True, text=True).stdout.strip() == bob_pane, message="bob's pane to be selected")
    assert active
    assert tmux.pane_alive(tmux_socket, bob_pane)


def test_dash_window_runs_the_dashboard(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("1xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    def screen() -> str:
        return "\n".join(tmux.capture(tmux_socket, state.windows["dash"]))

    retry_until(lambda: "org/1xcpu" in screen() and "org/1xcpu.alice" in screen(), timeout=30,
                message="the dashboard to draw the org and its agent")
