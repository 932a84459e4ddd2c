"""`autoorg up / status / down` on a real git repo and a real tmux server (private socket)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from autoorg import workspace
from autoorg.errors import ComputeError, GitError, StateError, TmuxError
from autoorg.org import build_org, org_status, plan_org, teardown_org
from autoorg.paths import org_paths
from autoorg.runtime import tmux
from autoorg.state import read_state
from autoorg.testing import git, retry_until, run_cli


def dump_command(out: Path) -> str:
    """An agent that records its environment, cwd and branch, then waits like an interactive agent would."""
    return (f"sh -c 'env > {out}/$AUTOORG_AGENT.env; pwd > {out}/$AUTOORG_AGENT.cwd; "
            f"git rev-parse --abbrev-ref HEAD > {out}/$AUTOORG_AGENT.branch; exec sleep 600'")


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_up_4xcpu_gives_each_agent_its_worktree_branch_and_env(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("up", "4xcpu", "--task", "tiny", "--command", dump_command(out), "--no-attach")
    assert result.returncode == 0, result.stderr
    assert "attach with: tmux -L" in result.stdout
    paths = org_paths(repo, "4xcpu")
    state = read_state(paths)
    names = ["alice", "bob", "carol", "dave"]
    assert list(state.agents) == names
    for name in names:
        retry_until(lambda n=name: (out / f"{n}.branch").is_file() and (out / f"{n}.branch").read_text(),
                    message=f"{name}'s pane to start")
        worktree = paths.worktree(name)
        assert Path((out / f"{name}.cwd").read_text().strip()) == worktree
        assert (out / f"{name}.branch").read_text().strip() == f"org/4xcpu.{name}"
        env = read_env(out / f"{name}.env")
        assert env["AUTOORG_AGENT"] == name
        assert env["AUTOORG_HOME"] == str(paths.home)
        assert env["AUTOORG_TMUX_SOCKET"] == tmux_socket
        assert env["CUDA_VISIBLE_DEVICES"] == ""
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # this autoorg comes first
        pane = state.agents[name].pane
        assert pane.startswith("%")
        assert tmux.pane_alive(tmux_socket, pane)
    assert ".autoorg/" in (repo / ".git" / "info" / "exclude").read_text()
    assert workspace.dirty_paths(repo) == []

    status = json.loads(run_cli("status", "--json").stdout)
    assert status["running"] is True
    assert status["program_branch"] == "org/4xcpu"
    assert [a["name"] for a in status["agents"]] == names
    for a in status["agents"]:
        assert a["alive"] is True
        assert a["branch"] == f"org/4xcpu.{a['name']}"
        assert a["pane"] == state.agents[a["name"]].pane
        assert a["slots"] == ["cpu"] and a["role"] == "researcher" and a["backend"] == "command"
        assert a["head"] == status["program_head"]


def test_pane_borders_show_agent_names(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    for name, info in state.agents.items():
        assert tmux.pane_option(tmux_socket, info.pane, "@autoorg_agent") == name


def test_down_keeps_every_commit_and_saves_uncommitted_work(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("3xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    paths = plan.paths
    alice, bob = paths.worktree("alice"), paths.worktree("bob")
    (alice / "tiny" / "train.py").write_text("X = 0.5\n")
    git(alice, "commit", "-qam", "alice: lower X")
    (bob / "notes.txt").write_text("half-done idea\n")  # never committed by bob
    alice_head = workspace.head_commit(alice)

    result = run_cli("down")
    assert result.returncode == 0, result.stderr
    assert "kept org/3xcpu.alice: 1 commit(s)" in result.stdout
    assert "bob: uncommitted work saved as" in result.stdout
    assert not tmux.has_session(tmux_socket, state.session)
    assert not alice.exists() and not bob.exists()
    assert workspace.head_commit(repo, "org/3xcpu.alice") == alice_head
    assert git(repo, "show", "org/3xcpu.bob:notes.txt") == "half-done idea"
    assert paths.home.exists()  # ledger/comms/runs are kept
    assert read_state(paths).status == "stopped"


def test_purge_deletes_only_branches_without_own_commits(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    build_org(plan)
    alice = plan.paths.worktree("alice")
    (alice / "tiny" / "train.py").write_text("X = 0.25\n")
    git(alice, "commit", "-qam", "work")
    result = teardown_org(plan.paths, purge=True)
    assert result.deleted == ["org/2xcpu.bob"]
    assert list(result.unmerged) == ["org/2xcpu.alice"]
    assert workspace.branch_exists(repo, "org/2xcpu.alice")
    assert workspace.branch_exists(repo, "org/2xcpu")


def test_up_again_after_down_continues_the_same_branches(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    build_org(plan)
    alice = plan.paths.worktree("alice")
    (alice / "tiny" / "train.py").write_text("X = 0.75\n")
    git(alice, "commit", "-qam", "work")
    head = workspace.head_commit(alice)
    teardown_org(plan.paths)
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    build_org(plan)
    assert workspace.head_commit(plan.paths.worktree("alice")) == head


def test_two_orgs_side_by_side_need_tag(repo: Path, tmux_socket: str) -> None:
    for preset in ("1xcpu", "2xcpu"):
        build_org(plan_org(preset, task="tiny", backend="command", command="sleep 600", socket=tmux_socket))
    result = run_cli("status")
    assert result.returncode == 2
    assert "several orgs" in result.stderr and "--tag" in result.stderr
    assert run_cli("status", "--tag", "1xcpu").returncode == 0


def test_failure_halfway_rolls_back(repo: Path) -> None:
    # tmux cannot create a socket in a folder that does not exist: the grid fails after the worktrees exist
    plan = plan_org("3xcpu", task="tiny", backend="command", command="sleep 600", socket="no/such/dir")
    with pytest.raises(TmuxError):
        build_org(plan)
    assert not plan.paths.home.exists()
    assert git(repo, "branch", "--list", "org/*") == ""
    assert "worktrees" not in git(repo, "worktree", "list")


def test_dry_run_touches_nothing(repo: Path, tmux_socket: str) -> None:
    result = run_cli("up", "4xcpu", "--task", "tiny", "--backend", "command", "--command", "bash", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "org/4xcpu.alice" in result.stdout and "slots=cpu" in result.stdout
    assert "agents:" in result.stdout  # the resolved spec comes first
    assert not (repo / ".autoorg").exists()
    assert git(repo, "branch", "--list", "org/*") == ""
    assert not tmux.has_session(tmux_socket, "autoorg-4xcpu")


def test_dry_run_of_a_bad_process_value_names_file_and_line(repo: Path, tmp_path: Path) -> None:
    org_file = tmp_path / "org.yaml"
    org_file.write_text("agents: [alice]\nprocesses: {gate: {repeats: eight}}\n")
    result = run_cli("up", str(org_file), "--task", "tiny", "--backend", "command", "--command", "bash",
                     "--dry-run", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autoorg: {org_file}:2: processes.gate.repeats must be a whole number >= 1, got 'eight'"]
    assert not (repo / ".autoorg").exists()


def fake_nvidia_smi(bin_dir: Path, count: int) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    rows = "\\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, GPU-{i:04d}" for i in range(count))
    script.write_text(f"#!/bin/sh\nprintf '{rows}\\n'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_gpu_agents_get_their_gpus(repo: Path, tmux_socket: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", 4)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    plan = plan_org("2x2gpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    assert [a.env["CUDA_VISIBLE_DEVICES"] for a in plan.agents] == ["0,1", "2,3"]
    with pytest.raises(ComputeError, match=r"GPU\(s\) 0, 1, 2, 3, 4, 5, 6, 7 but this machine has 4 GPU"):
        plan_org("8x1gpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)


def test_no_gpus_is_a_clear_error_suggesting_cpu(repo: Path, tmux_socket: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi
    result = run_cli("up", "8x1gpu", "--task", "tiny", "--backend", "command", "--command", "bash",
                     "--no-attach", env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no GPUs" in result.stderr and "use 8xcpu" in result.stderr


@pytest.mark.parametrize("setup, args, fragment", [
    ("dirty", ["up", "2xcpu"], "uncommitted changes (untracked.txt)"),
    ("none", ["up", "nonsense"], "unknown org 'nonsense': not a preset, a topology or an org YAML file"),
    ("none", ["up", "2xcpu", "--task", "nope"], "no task 'nope'"),
    ("none", ["up", "2xcpu", "--backend", "bogus"], "unknown backend 'bogus'"),
    ("none", ["up", "2xcpu", "--from", "no-such-rev"], "unknown revision 'no-such-rev'"),
    ("none", ["status"], "no org in"),
    ("none", ["down"], "no org in"),
    ("none", ["attach"], "no org in"),
])
def test_bad_input_is_one_line_and_exit_2(repo: Path, tmux_socket: str, setup: str, args: list[str],
                                          fragment: str) -> None:
    if setup == "dirty":
        (repo / "untracked.txt").write_text("x")
    defaults = [] if args[0] != "up" or "--task" in args else ["--task", "tiny"]
    extra = ["--backend", "command", "--command", "bash", "--no-attach"] if args[0] == "up" and "--backend" not in args \
        else (["--command", "bash", "--no-attach"] if args[0] == "up" else [])
    result = run_cli(*args, *defaults, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (repo / ".autoorg").exists()


def test_not_a_git_repo(tmp_path: Path, tmux_socket: str) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run_cli("up", "2xcpu", "--no-attach", cwd=plain)
    assert result.returncode == 2
    assert "not a git repository" in result.stderr


def test_tag_already_running(repo: Path, tmux_socket: str) -> None:
    build_org(plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket))
    with pytest.raises(StateError, match="already running"):
        plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket)


def test_missing_tmux_and_git_are_named(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "emptybin"
    empty.mkdir()
    result = run_cli("up", "2xcpu", "--task", "tiny", "--command", "bash", "--no-attach",
                     env={"PATH": str(empty)})
    assert result.returncode == 2
    assert "git not found" in result.stderr


def test_missing_tmux_is_named(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "gitonly"
    bindir.mkdir()
    (bindir / "git").symlink_to("/usr/bin/git")
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(TmuxError, match="tmux not found"):
        build_org(plan_org("1xcpu", task="tiny", backend="command", command="sleep 600"))
    assert not (repo / ".autoorg" / "1xcpu").exists()


def test_crashed_agent_is_reported(repo: Path, tmux_socket: str) -> None:
    plan = plan_org("2xcpu", task="tiny", backend="command", command="exit 3", socket=tmux_socket)
    build_org(plan)
    status = retry_until(lambda: (s := org_status(plan.paths)) and not any(a["alive"] for a in s["agents"]) and s,
                         message="agents to exit")
    assert {a["state"] for a in status["agents"]} == {"crashed"}


def test_git_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        workspace.find_repo(tmp_path)


def outer_terminal() -> tuple[str, str]:
    """A second tmux server whose pane is the 'terminal' a user types into."""
    socket = f"outer-{uuid.uuid4().hex[:8]}"
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "term", "-x", "200", "-y", "50"], check=True)
    return socket, "term"


def test_attach_to_an_agent_pane_from_a_terminal(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    plan = plan_org("3xcpu", task="tiny", backend="command", command="sh -c 'echo I am $AUTOORG_AGENT; exec sleep 600'",
                    socket=tmux_socket)
    state = build_org(plan)
    outer, session = outer_terminal()
    try:
        cmd = f"cd {repo} && {sys.executable} -m autoorg attach bob"
        subprocess.run(["tmux", "-L", outer, "send-keys", "-t", session, cmd, "Enter"], check=True)
        clients = retry_until(lambda: subprocess.run(["tmux", "-L", tmux_socket, "list-clients", "-F",
                                                      "#{client_session} #{pane_id}"],
                                                     capture_output=True, text=True).stdout.strip(),
                              message="a client attached to the org")
        assert clients == f"{state.session} {state.agents['bob'].pane}"
        screen = retry_until(lambda: "\n".join(tmux.capture(outer, session)) if "I am bob" in
                             "\n".join(tmux.capture(outer, session)) else "", message="bob's pane on screen")
        assert " bob " in screen  # the pane border names the agent
    finally:
        subprocess.run(["tmux", "-L", outer, "kill-server"], capture_output=True)
        teardown_org(plan.paths)  # the org's daemon goes with its session, not minutes after the test


def test_up_from_a_terminal_attaches(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    outer, session = outer_terminal()
    try:
        cmd = (f"cd {repo} && {sys.executable} -m autoorg up 2xcpu --task tiny --command 'sleep 600' "
               f"--socket {tmux_socket}")
        subprocess.run(["tmux", "-L", outer, "send-keys", "-t", session, cmd, "Enter"], check=True)
        clients = retry_until(lambda: subprocess.run(["tmux", "-L", tmux_socket, "list-clients", "-F",
                                                      "#{client_session} #{window_name}"],
                                                     capture_output=True, text=True).stdout.strip(),
                              timeout=30, message="up to attach")
        assert clients == "autoorg-2xcpu org"
    finally:
        subprocess.run(["tmux", "-L", outer, "kill-server"], capture_output=True)


def test_up_inside_tmux_switches_the_client(repo: Path, tmux_socket: str) -> None:
    # a real client on the org's own server: a terminal (outer server) attached to session "work" on tmux_socket
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "work", "-x", "200", "-y", "50"], check=True)
    outer, session = outer_terminal()
    try:
        subprocess.run(["tmux", "-L", outer, "send-keys", "-t", session,
                        f"TMUX= tmux -L {tmux_socket} attach -t work", "Enter"], check=True)

        def client_session() -> str:
            return subprocess.run(["tmux", "-L", tmux_socket, "list-clients", "-F", "#{client_session}"],
                                  capture_output=True, text=True).stdout.strip()

        retry_until(lambda: client_session() == "work", timeout=30, message="the terminal to attach")
        subprocess.run(["tmux", "-L", tmux_socket, "send-keys", "-t", "work",
                        f"cd {repo} && {sys.executable} -m autoorg up 2xcpu --task tiny --command 'sleep 600'",
                        "Enter"], check=True)
        retry_until(lambda: client_session() == "autoorg-2xcpu", timeout=30, message="switch-client to the org")
    finally:
        subprocess.run(["tmux", "-L", outer, "kill-server"], capture_output=True)


def test_a_dead_daemon_is_shown_and_resume_restarts_it(repo: Path, tmux_socket: str) -> None:
    state = build_org(plan_org("1xcpu", task="tiny", backend="command", command="sleep 600", socket=tmux_socket))
    paths = org_paths(repo, "1xcpu")
    daemon = state.services["daemon"]
    retry_until(lambda: org_status(paths)["daemon_alive"], timeout=30, message="the daemon to run")
    pid = tmux.pane_info(tmux_socket, daemon)["pid"]  # type: ignore[index]
    os.kill(int(pid), 9)
    retry_until(lambda: not org_status(paths)["daemon_alive"], timeout=30, message="the daemon's pane to die")
    shown = run_cli("status")
    assert "daemon: not running" in shown.stdout and "autoorg up --resume" in shown.stdout
    resumed = run_cli("up", "--resume", "--no-attach")
    assert resumed.returncode == 0, resumed.stderr
    retry_until(lambda: org_status(paths)["daemon_alive"], timeout=30, message="the daemon to run again")
    refused = run_cli("up", "--resume", "--task", "tiny")
    assert refused.returncode == 2 and "cannot be combined with --task" in refused.stderr


def test_up_inside_tmux_without_socket_is_found_from_outside(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOORG_TMUX_SOCKET", raising=False)
    outer, session = outer_terminal()
    try:
        cmd = f"cd {repo} && unset AUTOORG_TMUX_SOCKET && {sys.executable} -m autoorg up 1xcpu --task tiny " \
              f"--command 'sleep 600' --no-attach"
        subprocess.run(["tmux", "-L", outer, "send-keys", "-t", session, cmd, "Enter"], check=True)
        paths = org_paths(repo, "1xcpu")
        retry_until(lambda: paths.state_json.is_file(), timeout=30, message="up inside tmux")
        retry_until(lambda: run_cli("status").returncode == 0, timeout=30, message="state to be written")
        status = json.loads(run_cli("status", "--json").stdout)
        assert status["running"] is True and status["socket"].endswith(f"/{outer}")
        assert run_cli("down").returncode == 0
        assert not tmux.has_session(status["socket"], "autoorg-1xcpu")
    finally:
        subprocess.run(["tmux", "-L", outer, "kill-server"], capture_output=True)
