"""The Textual dashboard, driven with Pilot against a real org (tmux, git, ledger), with SVG snapshots at fixed sizes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable

from autoorg import comms
from autoorg.clock import parse_iso
from autoorg.compute.cpu_load import busy_percent, cpu_times
from autoorg.daemon.notify import Notice, add_notice
from autoorg.dash import make_app
from autoorg.dash.data import SnapshotCache, take_snapshot
from autoorg.dash.screens import ComposeScreen, TextScreen
from autoorg.experiments import ledger
from autoorg.org import build_org, org_status, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.runtime import tmux
from autoorg.testing import git, make_repo, retry_until, run_cli

# Fixed commit dates and names make the same commit hashes, so the heads drawn are the same on every machine.
GIT_DATES = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000"}


def run_experiment(paths_home: Path, agent: str, worktree: Path) -> None:
    (worktree / "tiny" / "train.py").write_text((worktree / "tiny" / "train.py").read_text().replace("X = 1.0", "X = 0.5"))
    env = {"AUTOORG_HOME": str(paths_home), "AUTOORG_AGENT": agent}
    result = run_cli("exp", "run", "-m", "lower X", cwd=worktree, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dashboard_shows_agents_and_results_and_jumps_to_a_pane(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    paths = plan.paths
    run_experiment(paths.home, "alice", paths.worktree("alice"))
    snap = take_snapshot(paths)
    assert [a.name for a in snap.agents] == ["alice", "bob"]
    alice = snap.agents[0]
    assert alice.latest_exp and alice.loss == "0.5000" and alice.last.startswith(alice.latest_exp)
    assert snap.metric == "loss" and snap.direction == "minimize"

    async def drive() -> None:
        app = make_app(paths, refresh_s=0.5)
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for_first_draw(pilot)
            table = app.query_one("#agents")
            assert table.row_count == 2  # type: ignore[attr-defined]
            await pilot.press("down", "enter")  # bob
            await pilot.pause(0.2)

    asyncio.run(drive())
    bob_pane = state.agents["bob"].pane
    active = retry_until(lambda: subprocess.run(
        ["tmux", "-L", tmux_socket, "display-message", "-p", "-t", state.windows["org"], "#{pane_id}"],
        capture_output=True, text=True).stdout.strip() == bob_pane, message="bob's pane to be selected")
    assert active
    assert tmux.pane_alive(tmux_socket, bob_pane)


def test_dash_window_runs_the_dashboard(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("1xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    # prefix + D opens the dashboard as a popup in the org's session (and only there: the key reads its option)
    keys = subprocess.run(["tmux", "-L", tmux_socket, "list-keys", "-T", "prefix", "D"], capture_output=True,
                          text=True, check=True).stdout
    assert "#{@autoorg_dash}" in keys and "run-shell" in keys
    bound = subprocess.run(["tmux", "-L", tmux_socket, "show-options", "-v", "-t", state.session, "@autoorg_dash"],
                           capture_output=True, text=True, check=True).stdout
    assert f"AUTOORG_HOME={plan.paths.home}" in bound and bound.strip().endswith("dash --popup")
    def screen() -> str:
        return "\n".join(tmux.capture(tmux_socket, state.windows["dash"]))

    # ~2.5 s here; a CI machine under both workers' orgs once took over 30
    retry_until(lambda: "org/1xcpu" in screen() and "org/1xcpu.alice" in screen(), timeout=90,
                message="the dashboard to draw the org and its agent", show=screen)


# ---------------------------------------------------------------------------------------------------------------
# Snapshots: an org whose every drawn value is fixed (commit hashes, states, ledger rows, live loss)


async def wait_for_first_draw(pilot: Pilot[Any]) -> None:
    """Until the first snapshot is drawn and both tables have sized their columns to it (they do so when idle)."""
    app = pilot.app
    for _ in range(200):
        if app.snapshot is not None and all(columns_fit(t) for t in app.query(DataTable)):  # type: ignore[attr-defined]
            break
        await pilot.pause(0.05)
    assert app.snapshot is not None  # type: ignore[attr-defined]
    # A DataTable may keep lines it rendered before it sized its columns (the live dashboard heals on its next
    # refresh); drop them so the screenshot shows the settled table.
    for table in app.query(DataTable):
        table.notify_style_update()
    await pilot.pause()


def columns_fit(table: DataTable[Any]) -> bool:
    """Every column of table is as wide as its widest cell."""
    if table.row_count == 0:
        return False
    for index, column in enumerate(table.ordered_columns):
        widest = max(Text.from_markup(str(cell)).cell_len for cell in table.get_column_at(index))
        if column.content_width < widest:
            return False
    return True


def add_result(paths: OrgPaths, agent: str, description: str, **fields: Any) -> str:
    exp = ledger.add_experiment(paths, {
        "kind": "exp", "agent": agent, "task": "tiny", "commit_sha": "0" * 40, "tree": "1" * 40, "head": "2" * 40,
        "description": description, "seed": 1, "budget": 10.0, "standard": 1, "slot_class": "cpu"})
    ledger.update_experiment(paths, exp, **fields)
    return exp


@pytest.fixture
def known_org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmux_socket: str) -> Iterator[OrgPaths]:
    """A real org of five agents, one in each of five states, with promoted, discarded, crashed and running
    experiments. Its daemon is kept out (its lock is held here, so it exits at once): a live daemon would queue
    baseline runs and restart the crashed agent while the dashboard draws."""
    for name, value in GIT_DATES.items():
        monkeypatch.setenv(name, value)
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    plan = plan_org("5xcpu", tag="snap", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    paths = plan.paths
    paths.locks.mkdir(parents=True)
    with open(paths.locks / "daemon.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        state = build_org(plan)
        names = list(state.agents)
        daemon_log = paths.logs / "daemon.log"
        retry_until(lambda: not tmux.pane_alive(tmux_socket, state.services["daemon"])
                    or "already runs" in "\n".join(tmux.capture(tmux_socket, state.services["daemon"])),
                    timeout=30, message="the second daemon to give way")
        assert not daemon_log.exists()
        first, second, third, fourth, fifth = names
        comms.write_status(paths, first, "running", "e0004")
        comms.write_status(paths, second, "idle")
        comms.write_status(paths, third, "waiting", "for a slot")
        comms.hold(paths, fourth, "human")
        subprocess.run(["tmux", "-L", tmux_socket, "kill-pane", "-t", state.agents[fifth].pane], check=True)
        promoted = add_result(paths, first, "lower X to 0.8", verdict="promoted", metric=0.8, delta=-0.2)
        add_result(paths, second, "raise X to 1.1", verdict="discarded", metric=1.1, delta=0.1)
        add_result(paths, third, "divide X by zero", verdict="crash (exit 1)")
        running = add_result(paths, first, "X = 0.5", verdict="running")
        ledger.add_promotion(paths, exp=promoted, agent=first, old_head="2" * 40, new_head="3" * 40, metric=0.8,
                             head_mean=1.0, delta=-0.2, band=0.05, description="lower X to 0.8")
        (paths.runs / running).mkdir(parents=True, exist_ok=True)
        (paths.runs / running / "metrics.jsonl").write_text("".join(
            json.dumps({"step": 10 * i, "train_loss": 1.0 - 0.03 * i + 0.02 * (i % 3)}) + "\n" for i in range(13)))
        # a candidate of carol's under verification in same-seed pairs: the first pair landed, the second runs
        pending = add_result(paths, third, "halve the learning rate", verdict="verifying", metric=0.74, delta=-0.06)
        arms = [("3", 7, "ok", 0.8), ("4", 7, "ok", 0.75), ("3", 8, "running", None), ("4", 8, "queued", None)]
        reruns = [add_result(paths, "gate", f"verify {pending}", verdict=verdict, metric=metric)
                  for _, _, verdict, metric in arms]
        for exp, (commit, seed, _, _) in zip(reruns, arms, strict=True):
            ledger.update_experiment(paths, exp, kind="verify", candidate=pending, commit_sha=commit * 40, seed=seed)
        ledger.add_verification(paths, exp=pending, head="3" * 40, commit_sha="4" * 40, runs=reruns, status="running")
        for reason, agent, text in (("promoted", first, "promoted e0001: 0.8 (-0.2) lower X to 0.8"),
                                    ("waiting", third, "is waiting for input: permission prompt"),
                                    ("crashed", fifth, "crashed: was killed by signal 9")):
            add_notice(paths, Notice(ts="2026-01-01T00:01:00.000000Z", org="snap", agent=agent, reason=reason,
                                     text=text, key=f"{agent}:{reason}"))
        ledger.record_usage(paths, first, [{"session": "claude:1", "backend": "claude", "model": "claude-sonnet-4-5",
                                            "input_tokens": 12000, "cached_input_tokens": 30000,
                                            "cache_write_tokens": 0, "output_tokens": 2500, "requests": 9,
                                            "cost_usd": 0.42}])
        comms.post_board(paths, second, "X above 1 only hurts; trying the schedule next")
        comms.post_board(paths, first, "0.8 is promoted; verifying whether 0.5 holds")
        yield paths


def fixed_clock(paths: OrgPaths) -> Callable[[], datetime]:
    """150 s after the last status was written: every "for how long" reads 2m on any machine."""
    stamps = [s["since"] for s in (comms.read_status(paths, a.name) for a in take_snapshot(paths).agents) if s]
    moment = max(parse_iso(t) for t in stamps) + timedelta(seconds=150)
    return lambda: moment


@pytest.mark.parametrize("size", [(80, 24), (240, 64)], ids=["80x24", "240x64"])
def test_dashboard_snapshot(known_org: OrgPaths, snap_compare: Any, size: tuple[int, int]) -> None:
    snap = take_snapshot(known_org)
    assert [a.state for a in snap.agents] == ["running", "idle", "waiting", "human", "crashed"]
    assert snap.gate[0].landed == 2 and snap.gate[0].needed == 4
    assert snap.gate[0].pairs == ["seed 7: 0.7500 vs 0.8000 +0.0500", "seed 8: queued vs running"]
    assert [n.reason for n in snap.notices] == ["promoted", "waiting", "crashed"]
    assert snap.agents[0].curve and snap.agents[0].cost == "$0.42"
    # one draw: no refresh while the screenshot is taken
    app = make_app(known_org, refresh_s=3600, now=fixed_clock(known_org))
    assert snap_compare(app, terminal_size=size, run_before=wait_for_first_draw)


# ---------------------------------------------------------------------------------------------------------------
# Keys: each does to the real org what its CLI command does


def test_keys_steer_a_real_org(repo: Path) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", runtime="headless")
    build_org(plan)
    paths = plan.paths
    run_experiment(paths.home, "alice", paths.worktree("alice"))

    def state_of(agent: str) -> str:
        return (comms.read_status(paths, agent) or {}).get("state", "")

    async def drive() -> None:
        app = make_app(paths, refresh_s=0.5)
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for_first_draw(pilot)

            await pilot.press("t")  # alice is selected first
            assert state_of("alice") == "human"
            held = comms.read_status(paths, "alice") or {}
            assert held["detail"].startswith("taken over by")
            assert org_status(paths)["agents"][0]["since"] == held["since"]  # status --json says since when
            await pilot.press("r")
            assert state_of("alice") not in comms.HELD_STATES

            await pilot.press("down", "p")  # bob
            assert state_of("bob") == "paused"
            await pilot.press("p")
            assert state_of("bob") not in comms.HELD_STATES
            await pilot.press("up")

            await pilot.press("m")
            assert isinstance(app.screen, ComposeScreen)
            await pilot.press(*"try a lower X", "enter")
            assert not isinstance(app.screen, ComposeScreen)
            inbox = comms.read_inbox(paths, "alice", include_read=True)
            assert [m.body.strip() for m in inbox if m.sender != "gate" and m.kind == "note"][-1:] == ["try a lower X"]

            await pilot.press("d")
            assert isinstance(app.screen, TextScreen) and "X = 0.5" in app.screen.text
            await pilot.press("escape")
            await pilot.press("l")
            assert isinstance(app.screen, TextScreen)
            assert app.screen.text == (paths.runs / snap_exp(paths, "alice") / "log").read_text()
            await pilot.press("escape")
            await pilot.press("question_mark")
            assert isinstance(app.screen, TextScreen) and "take the agent over" in app.screen.text
            assert "o        write the org's report" in app.screen.text
            await pilot.press("escape")

            await pilot.press("o")  # the report, written as `autoorg report` writes it, and where it is
            for _ in range(600):
                if isinstance(app.screen, TextScreen):
                    break
                await pilot.pause(0.05)
            assert isinstance(app.screen, TextScreen)
            assert str(paths.home / "report" / "report.html") in app.screen.text
            assert "experiments / crashes / refusals" in app.screen.text
            assert (paths.home / "report" / "progress.png").read_bytes()[:4] == b"\x89PNG"
            await pilot.press("escape")

            await pilot.press("enter")  # headless: no pane, it says where the output is
            await pilot.pause()
            assert any("alice.log" in str(n.message) for n in app._notifications)

    try:
        asyncio.run(drive())
    finally:
        teardown_org(paths)  # its headless daemon and agents go with the test


def snap_exp(paths: OrgPaths, agent: str) -> str:
    return ledger.experiments(paths, agent=agent, kinds=("exp",))[-1]["exp"]


def test_an_agent_on_an_old_head_is_behind(repo: Path) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", runtime="headless")
    state = build_org(plan)
    paths = plan.paths
    try:
        assert not any(a.behind for a in take_snapshot(paths).agents)
        # the program branch moves on (as a promotion moves it); bob then merges it, alice does not
        tree = git(repo, "rev-parse", f"{state.program_branch}^{{tree}}")
        head = git(repo, "commit-tree", tree, "-p", state.program_branch, "-m", "promoted")
        git(repo, "update-ref", f"refs/heads/{state.program_branch}", head)
        git(paths.worktree("bob"), "merge", "-q", "--ff-only", head)
        assert {a.name: a.behind for a in take_snapshot(paths).agents} == {"alice": True, "bob": False}
    finally:
        teardown_org(paths)


def test_cpu_load_is_a_share_of_each_core() -> None:
    before = cpu_times()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # keep one core busy a moment
        pass
    busy = busy_percent(before, cpu_times())
    assert set(busy) <= set(before) and busy
    assert all(0.0 <= v <= 100.0 for v in busy.values())


def test_a_kept_snapshot_cache_sees_every_ledger_change(repo: Path) -> None:
    plan = plan_org("1xcpu", task="tiny", backend="command", command="sleep 600", runtime="headless")
    build_org(plan)
    paths = plan.paths
    try:
        cache = SnapshotCache()
        take_snapshot(paths, cache)
        first = add_result(paths, "alice", "one", verdict="discarded", metric=1.1, delta=0.1)
        assert take_snapshot(paths, cache).agents[0].last == f"{first} +0.1000 discarded"
        ledger.update_experiment(paths, first, verdict="crash (exit 1)")  # a change that adds no row
        assert take_snapshot(paths, cache).agents[0].last_verdict == "crash (exit 1)"
        second = add_result(paths, "alice", "two", verdict="promoted", metric=0.9, delta=-0.1)
        assert take_snapshot(paths, cache).recent[0]["exp"] == second
    finally:
        teardown_org(paths)


def test_a_run_on_a_ray_node_shows_where_it_runs(known_org: OrgPaths) -> None:
    """The running experiment's slot names the Ray node it is on, as `status` does."""
    first = take_snapshot(known_org).agents[0]
    row = next(r for r in ledger.experiments(known_org, agent=first.name) if r["verdict"] == "running")
    ledger.update_experiment(known_org, row["exp"], slot="cpu@10.0.0.5:3f2a9c", executor="ray", node="3f2a9c")
    assert take_snapshot(known_org).agents[0].slots == "cpu@10.0.0.5:3f2a9c"
