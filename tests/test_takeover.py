"""Taking an agent over from the CLI, in a tmux org and a headless one: restart, logs, diff, ls."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoorg.org import build_org, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session
from autoorg.state import read_state
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.experiments import TRAIN, set_knobs
from tests.exp_support import add_synthetic


def _pid(paths: OrgPaths, agent: str) -> str:
    live = open_session(paths, read_state(paths)).liveness() or {}
    seen = live.get(agent)
    return seen.pid if seen is not None and not seen.dead else ""


@pytest.mark.parametrize("runtime", ["tmux", "headless"])
def test_restart_logs_diff_and_ls(runtime: str, repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo)
    spec = {"tag": "k", "task": "synthetic",
            "defaults": {"backend": "command", "command": "echo ready-$AUTOORG_AGENT; sleep 3600"},
            "agents": [{"name": "alice", "slots": "cpu"}], "processes": {"baseline": {"repeats": 2}}}
    (tmp_path / "k.yaml").write_text(yaml.safe_dump(spec))
    plan = plan_org(str(tmp_path / "k.yaml"), repo=repo, socket=tmux_socket, runtime=runtime)
    build_org(plan)
    paths = plan.paths
    env = {"AUTOORG_HOME": str(paths.home)}
    try:
        first = retry_until(lambda: _pid(paths, "alice"), timeout=30, message="alice to run")
        logs = retry_until(lambda: (p := run_cli("logs", "alice", env=env)).returncode == 0
                           and "ready-alice" in p.stdout and p, timeout=30, message="alice's output in logs")
        assert logs.stdout.startswith("== alice: its pane")

        proc = run_cli("restart", "alice", env=env)
        assert (proc.returncode, proc.stdout) == (0, "alice restarted\n"), proc.stderr
        retry_until(lambda: _pid(paths, "alice") not in ("", first), timeout=30, message="a fresh alice")
        assert run_cli("restart", "nobody", env=env).returncode == 2

        set_knobs(paths.worktree("alice"), LEARNING_RATE=0.007)
        git(paths.worktree("alice"), "commit", "-qam", "lr")
        diff = run_cli("diff", "alice", env=env)
        assert diff.returncode == 0 and f"+++ b/{TRAIN}" in diff.stdout and "+LEARNING_RATE = 0.007" in diff.stdout

        listing = run_cli("ls", cwd=repo)
        assert (listing.returncode, listing.stdout) == (0, "k\trunning\n")
    finally:
        teardown_org(paths)
    assert run_cli("ls", cwd=repo).stdout == "k\tstopped\n"
    proc = run_cli("restart", "alice", env=env)
    assert proc.returncode == 2 and "is not running" in proc.stderr and proc.stderr.count("\n") == 1
