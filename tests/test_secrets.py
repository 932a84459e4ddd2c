"""Keys stay with the agent that needs them: the daemon, the dashboard, a command agent, an experiment worker and
the run itself have none, read from /proc/<pid>/environ of the live processes of a real org, tmux and headless."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from autoorg.experiments import ledger
from autoorg.experiments.process import RUN_MARKER, run_processes
from autoorg.org import build_org, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.testing import retry_until, run_cli
from autoorg.testing.experiments import TRAIN
from tests.exp_support import add_synthetic

KEY = "sk-ant-test-0123456789"
TOKEN = "ghp_test_token_0123456789"

# Trains until killed, after saying where it is
LONG_RUN = """\
import time
time.sleep(1000)
"""


def org_environs(paths: OrgPaths) -> dict[int, bytes]:
    """The command line and environment of every live process of this org: each carries AUTOORG_HOME, or (a
    sealed run, whose environment is an allow-list) the marker of one of the org's runs."""
    needles = (f"AUTOORG_HOME={paths.home}".encode(), f"{RUN_MARKER}={paths.runs}/".encode())
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if any(v.startswith(needles) for v in environ.split(b"\0")):
            found[int(name)] = cmdline.replace(b"\0", b" ") + b"\n" + environ
    return found


def _has_secret(environ: bytes) -> bool:
    return KEY.encode() in environ or TOKEN.encode() in environ


@pytest.mark.parametrize("runtime", ["tmux", "headless"])
def test_no_key_reaches_the_daemon_a_command_agent_a_worker_or_a_run(
        runtime: str, repo: Path, tmux_socket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    add_synthetic(repo)
    spec = {"tag": "s", "task": "synthetic", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": "alice", "slots": "cpu"}, {"name": "bob", "slots": "cpu"}],
            "processes": {"baseline": {"repeats": 2}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    plan = plan_org(str(tmp_path / "s.yaml"), repo=repo, socket=tmux_socket, runtime=runtime)
    build_org(plan)
    paths = plan.paths
    try:
        (paths.worktree("bob") / TRAIN).write_text(LONG_RUN)
        # bob's own process holds the key (as an agent sourcing its env file does) when it submits
        proc = run_cli("exp", "submit", "-m", "long", "--budget", "300", cwd=paths.worktree("bob"),
                       env={"AUTOORG_AGENT": "bob", "AUTOORG_HOME": str(paths.home),
                            "ANTHROPIC_API_KEY": KEY, "GITHUB_TOKEN": TOKEN})
        assert proc.returncode == 0, proc.stderr
        exp = proc.stdout.split()[0]
        run_pids = retry_until(lambda: run_processes(str(paths.runs / exp)), timeout=30, message="the run to start")
        worker = int(ledger.get_experiment(paths, exp)["pid"])

        def everyone() -> dict[int, bytes]:
            procs = org_environs(paths)
            kinds = b"".join(procs.values())
            wanted = (b"daemon", b"sleep 3600", b"exp worker", b"train.py")
            return procs if all(w in kinds for w in wanted) else {}

        procs = retry_until(everyone, timeout=30, message="the daemon, the agents, the worker and the run")
        assert worker in procs and set(run_pids) & set(procs)
        leaks = [cmd.split(b"\n")[0].decode(errors="replace") for cmd in procs.values() if _has_secret(cmd)]
        assert leaks == []
    finally:
        teardown_org(paths)
