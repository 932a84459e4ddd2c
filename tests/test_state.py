"""state.json through state.py: a round trip keeps today's keys, and a missing, damaged or newer file is a clear
StateError (one line at the CLI, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoorg.errors import StateError
from autoorg.paths import org_paths
from autoorg.state import (
    STATE_VERSION,
    AgentState,
    OrgState,
    ProcessRecord,
    read_state,
    update_state,
    write_state,
)
from autoorg.testing import run_cli


def sample() -> OrgState:
    return OrgState(tag="t", repo="/r", program_branch="org/t", base="abc", task="/r/task.yaml", created="now",
                    agents={"alice": AgentState(backend="command", branch="org/t.alice", worktree="/w/alice",
                                                slots=["cpu"], pane="%3")})


def test_round_trip_keeps_the_documented_keys_plus_version_and_runtime(repo: Path) -> None:
    paths = org_paths(repo, "t")
    paths.home.mkdir(parents=True)
    write_state(paths, sample())
    data = json.loads(paths.state_json.read_text())
    assert {"tag", "status", "repo", "socket", "session", "session_id", "windows", "services", "created",
            "program_branch", "base", "task", "agents", "version", "runtime"} <= set(data)
    assert data["version"] == STATE_VERSION and data["runtime"] == "tmux"
    assert data["agents"]["alice"] == {"pane": "%3", "backend": "command", "backend_reason": "",
                                       "branch": "org/t.alice", "worktree": "/w/alice", "slots": ["cpu"]}
    assert read_state(paths) == sample()

    def headless(state: OrgState) -> None:
        state.agents["alice"].process = ProcessRecord(pid=42, start=7)

    update_state(paths, headless)
    assert read_state(paths).agents["alice"].process == ProcessRecord(pid=42, start=7)


@pytest.mark.parametrize(("content", "says"), [
    (None, "no org state"),
    ("{not json", "cannot read"),
    ('{"tag": "t"}', "missing key"),
    (json.dumps({**sample().to_json(), "version": STATE_VERSION + 1}), "newer autoorg"),
])
def test_a_missing_damaged_or_newer_state_is_a_clear_error(repo: Path, content: str | None, says: str) -> None:
    paths = org_paths(repo, "t")
    paths.home.mkdir(parents=True)
    (paths.home / "org.yaml").write_text("tag: t\nagents: [alice]\n")
    if content is not None:
        paths.state_json.write_text(content)
    with pytest.raises(StateError, match=says):
        read_state(paths)
    proc = run_cli("status", "--tag", "t", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert (says if content is not None else "no org with tag 't'") in proc.stderr
