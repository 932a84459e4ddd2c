"""Bad input found by fuzzing the CLI: each is one line on stderr and exit 2 (the hook keeps its exit 1), never a
traceback, and a bad file is quarantined, not crashed on. The real entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoorg import comms
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.spec import build_spec
from autoorg.testing import run_cli
from autoorg.testing.experiments import start_org
from tests.exp_support import add_synthetic

ORG = {"tag": "t", "task": "tiny", "agents": ["alice", "bob"]}


@pytest.fixture
def org(tmp_path: Path) -> OrgPaths:
    paths = OrgPaths(tmp_path / "repo" / ".autoorg" / "t")
    paths.home.mkdir(parents=True)
    paths.org_yaml.write_text(build_spec(ORG, source="test", backend="command", command="true").to_yaml())
    paths.state_json.write_text(json.dumps({"tag": "t", "status": "running", "agents": {}}))
    return paths


def env_of(paths: OrgPaths, agent: str | None = "alice") -> dict[str, str]:
    return {"AUTOORG_HOME": str(paths.home), **({"AUTOORG_AGENT": agent} if agent else {})}


def one_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert (proc.returncode, proc.stdout, proc.stderr.count("\n")) == (code, "", 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_non_utf8_stdin_to_msg_send(org: OrgPaths) -> None:
    proc = subprocess.run([sys.executable, "-m", "autoorg", "msg", "send", "bob", "-"], input=b"caf\xe9 \xff\n",
                          capture_output=True, timeout=60, env={**os.environ, **env_of(org)})
    assert (proc.returncode, proc.stdout, proc.stderr.count(b"\n")) == (2, b"", 1)
    assert proc.stderr.startswith(b"autoorg: stdin is not UTF-8 text")
    assert comms.read_inbox(org, "bob") == []


def test_a_board_that_is_not_utf8_is_quarantined_and_the_board_goes_on(org: OrgPaths) -> None:
    comms.post_board(org, "alice", "first post")
    comms.board_path(org).write_bytes(b"# Board\n\n## Posts\n\n- caf\xe9\n")
    err = one_line(run_cli("board", env=env_of(org)))
    assert err.startswith("autoorg: board.md was unreadable (not UTF-8 text")
    kept = org.comms / "quarantine" / "board.md"
    assert kept.read_bytes().endswith(b"caf\xe9\n")
    assert "unreadable board" in kept.with_name("board.md.reason").read_text()
    assert run_cli("board", "post", "second", "post", env=env_of(org)).returncode == 0
    shown = run_cli("board", env=env_of(org))
    assert shown.returncode == 0 and "second post" in shown.stdout


def test_hook_status_for_an_agent_not_in_the_org_writes_nothing(org: OrgPaths) -> None:
    err = one_line(run_cli("hook", "status", "idle", "--agent", "nosuch", env=env_of(org, None)), code=1)
    assert err.startswith("autoorg: no agent 'nosuch' in org 't'")
    assert not comms.status_path(org, "nosuch").exists()


def test_submit_with_a_huge_seed_or_an_endless_budget_and_results_of_nobody(repo: Path, tmux_socket: str,
                                                                             tmp_path: Path) -> None:
    add_synthetic(repo)
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    env = env_of(paths)
    (paths.worktree("alice") / "note.txt").write_text("x")  # something to commit, were it accepted
    for args, fragment in [(["--seed", str(10**30)], "--seed must be a whole number below 2**63"),
                           (["--budget", "inf"], "--budget must be a positive number of seconds, not inf"),
                           (["--budget", "nan"], "--budget must be a positive number of seconds, not nan")]:
        proc = run_cli("exp", "submit", "-m", "try", *args, cwd=paths.worktree("alice"), env=env)
        assert fragment in one_line(proc)
    assert [r for r in ledger.experiments(paths) if r["agent"] == "alice"] == []
    err = one_line(run_cli("results", "--agent", "nobody", env=env_of(paths, None)))
    assert err.startswith("autoorg: no agent 'nobody' in org 't'")
    assert run_cli("results", "--agent", "alice", env=env_of(paths, None)).returncode == 0
