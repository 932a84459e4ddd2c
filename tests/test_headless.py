"""Headless orgs end to end, through the real CLI, with no tmux reachable: `autoorg up --headless` runs each agent
(tests/comms_echo_agent.py) and the daemon as plain processes; status, doorbells through the FIFO, crash and
restart, attach's refusal and `down` all work, and nothing ever calls tmux."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from autoorg import comms
from autoorg.paths import OrgPaths, org_paths
from autoorg.state import read_state
from autoorg.testing import retry_until, run_cli

ECHO = f"{sys.executable} {Path(__file__).with_name('comms_echo_agent.py')}"


@pytest.fixture
def no_tmux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `tmux` first on PATH that only records that it was called, and an empty TMUX_TMPDIR; returns the record."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    called = tmp_path / "tmux-called"
    (fake / "tmux").write_text(f"#!/bin/sh\necho \"$@\" >> {called}\nexit 1\n")
    (fake / "tmux").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path / "tmux-tmpdir"))
    (tmp_path / "tmux-tmpdir").mkdir()
    return called


def up_headless(repo: Path) -> OrgPaths:
    org = {"tag": "hl", "defaults": {"backend": "command", "command": ECHO}, "agents": ["alice", "bob"],
           "processes": {"baseline": {"repeats": 2}, "restart": {"limit": 2, "backoff": "0.2s"}}}
    spec = repo.parent / "hl.yaml"
    spec.write_text(json.dumps(org))
    proc = run_cli("up", str(spec), "--task", "tiny", "--headless", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "headless" in proc.stdout and "attach with" not in proc.stdout
    return org_paths(repo, "hl")


def echo_log(paths: OrgPaths, agent: str) -> str:
    path = paths.home / "echo" / f"{agent}.log"
    return path.read_text() if path.exists() else ""


def running(pid: int) -> bool:
    """A process that exists and is not a zombie (a reaped-later child of no one we know still counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def group_members(pgids: set[int]) -> list[int]:
    """Live processes whose process group is one of pgids."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def test_headless_org_lives_talks_restarts_and_stops_without_tmux(repo: Path, no_tmux: Path, tmp_path: Path) -> None:
    paths = up_headless(repo)
    state = read_state(paths)
    assert state.runtime == "headless" and state.socket is None
    first = {name: a.process for name, a in state.agents.items()}
    daemon = state.service_processes["daemon"]
    assert all(p is not None for p in first.values())

    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    assert status["runtime"] == "headless" and status["running"] and status["daemon_alive"]
    assert [(a["name"], a["alive"]) for a in status["agents"]] == [("alice", True), ("bob", True)]

    # a message to an idle agent reaches its stdin through the daemon
    retry_until(lambda: (comms.read_status(paths, "alice") or {}).get("state") == "idle", timeout=30,
                message="alice idle")
    proc = run_cli("msg", "send", "alice", "try", "lr", "0.02", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    retry_until(lambda: "try lr 0.02" in echo_log(paths, "alice"), timeout=30, message="the doorbell in alice's stdin")
    assert "got: " in (paths.home / "runtime" / "alice.log").read_text()  # its stdout is appended to its log

    # killing an agent's process gets it marked crashed and restarted
    killed = first["alice"]
    assert killed is not None
    os.kill(killed.pid, signal.SIGKILL)
    retry_until(lambda: "alice: was killed (no exit status); restarting" in (paths.logs / "daemon.log").read_text(),
                timeout=30, message="alice marked crashed")
    restarted = retry_until(lambda: (p := read_state(paths).agents["alice"].process) and p.pid != killed.pid and p,
                            timeout=30, message="alice restarted")
    assert running(restarted.pid) and not group_members({killed.pid})  # its old group is gone with it
    retry_until(lambda: (comms.read_status(paths, "alice") or {}).get("state") == "idle", timeout=30,
                message="alice idle again")
    run_cli("msg", "send", "alice", "after", "restart", cwd=repo)
    retry_until(lambda: "after restart" in echo_log(paths, "alice"), timeout=30, message="a doorbell after restart")

    # attach: one line pointing at the logs, exit 2
    proc = run_cli("attach", "alice", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert str(paths.home / "runtime" / "alice.log") in proc.stderr

    # down: no process of the org is left
    proc = run_cli("down", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    recorded = {daemon.pid, killed.pid, restarted.pid, *(p.pid for p in first.values() if p)}
    assert [pid for pid in recorded if running(pid)] == []
    assert group_members(recorded) == []
    assert json.loads(run_cli("status", "--json", cwd=repo).stdout)["running"] is False

    # --resume brings it back headless, on the same branches; down again
    proc = run_cli("up", "--resume", "--tag", "hl", cwd=repo)
    assert proc.returncode == 0 and "headless" in proc.stdout, proc.stderr
    status = json.loads(run_cli("status", "--json", cwd=repo).stdout)
    assert status["running"] and status["daemon_alive"] and all(a["alive"] for a in status["agents"])
    resumed = read_state(paths)
    assert run_cli("down", cwd=repo).returncode == 0
    assert not group_members({p.pid for p in [*resumed.service_processes.values(),
                                               *(a.process for a in resumed.agents.values())] if p})

    # and tmux was never asked for anything
    assert not no_tmux.exists()
    assert list((tmp_path / "tmux-tmpdir").iterdir()) == []
