"""First-run papercuts, tried as a new user would: doctor's misses, the Python floor, dry runs on a machine without
GPUs, where the task's data goes, and a small terminal attaching to the org."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from autoorg import orgcode
from autoorg.cli.doctor import python_row
from autoorg.compute import gpu
from autoorg.environment import python_problem
from autoorg.paths import data_dir
from autoorg.testing import retry_until, run_cli

EXAMPLES = orgcode.source_root() / "examples"
NO_GPU_PATH = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # no nvidia-smi


def test_the_python_floor_is_the_declared_one() -> None:
    assert python_problem((3, 11, 0), ">=3.11") is None and python_problem((3, 12, 1), ">=3.11") is None
    too_old = python_problem((3, 10, 12), ">=3.11")
    assert too_old and "needs Python 3.11 or newer" in too_old and "this is Python 3.10.12" in too_old
    assert python_problem((3, 11, 3), ">=3.11.4") is not None
    pyproject = (orgcode.source_root() / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in pyproject
    row = python_row((3, 10, 12))  # doctor on an older interpreter: a miss naming the declared minimum
    assert row["level"] == "miss" and "3.11 or newer" in str(row["fix"])
    assert python_row()["level"] == "ok"


def test_doctor_lists_only_real_problems_as_missing(repo: Path) -> None:
    proc = run_cli("doctor", cwd=repo, env={"PATH": NO_GPU_PATH})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[info] backend command") for line in lines), proc.stdout
    assert not any(line.startswith("[miss] backend command") for line in lines)
    assert not any(line.startswith("[miss] gpus") for line in lines) and "(via none)" not in proc.stdout
    assert any(line.startswith("[ok  ] python") and "requires-python >=3.11" in line for line in lines)


@pytest.mark.parametrize("example, agents", [("solo.yaml", ["alice"]),
                                             ("karpathy-8.yaml", [f"{n}{i}" for i, n in enumerate(
                                                 ["opus", "sonnet", "codex", "codex", "opus", "sonnet", "codex",
                                                  "codex"])])])
def test_a_dry_run_without_gpus_prints_the_plan_and_what_is_missing(repo: Path, example: str,
                                                                    agents: list[str]) -> None:
    if gpu.discover()[0]:
        pytest.skip("this machine has GPUs (NVML): the example's GPUs are there")
    proc = run_cli("up", str(EXAMPLES / example), "--task", "tiny", "--dry-run", cwd=repo,
                   env={"PATH": NO_GPU_PATH})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    plan = proc.stdout.split("---\n")[1]
    assert all(f"  {name} " in plan for name in agents), proc.stdout
    assert "cannot start here: the org asks for GPU(s)" in proc.stderr and "no GPUs" in proc.stderr
    assert not (repo / ".autoorg").exists()


def pane_sizes(socket: str, session: str) -> dict[str, str]:
    out = subprocess.run(["tmux", "-L", socket, "list-panes", "-s", "-t", session, "-F",
                          "#{pane_id} #{window_name} #{pane_width}x#{pane_height}"],
                         capture_output=True, text=True, check=True).stdout
    return {p: size for p, window, size in (line.split() for line in out.splitlines()) if window != "dash"}


def test_a_small_client_does_not_shrink_the_agents_panes(repo: Path, tmux_socket: str) -> None:
    proc = run_cli("up", "2xcpu", "--task", "tiny", "--backend", "command", "--command", "sleep 600",
                   "--no-attach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(f"task data (datasets, tokenizers) is cached in {data_dir()}") == 1
    before = pane_sizes(tmux_socket, "autoorg-2xcpu")
    assert len(before) == 3  # two agents and the daemon
    pid, fd = pty.fork()
    if pid == 0:  # the child: an 80x24 terminal attaching to the org (never back into pytest)
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvp("tmux", ["tmux", "-L", tmux_socket, "attach", "-t", "autoorg-2xcpu:org"])
        finally:
            os._exit(127)
    try:
        def client_size() -> str:
            out = subprocess.run(["tmux", "-L", tmux_socket, "list-clients", "-F", "#{client_width}x#{client_height}"],
                                 capture_output=True, text=True).stdout.split()
            return out[0] if out else ""

        assert retry_until(client_size, timeout=30, message="the small client attached") == "80x24"
        subprocess.run(["tmux", "-L", tmux_socket, "refresh-client", "-S"], capture_output=True)
        assert pane_sizes(tmux_socket, "autoorg-2xcpu") == before
        subprocess.run(["tmux", "-L", tmux_socket, "detach-client", "-a", "-s", "autoorg-2xcpu"],
                       capture_output=True)
        subprocess.run(["tmux", "-L", tmux_socket, "detach-client", "-s", "autoorg-2xcpu"], capture_output=True)
        retry_until(lambda: client_size() == "", timeout=30, message="the client detached")
        assert pane_sizes(tmux_socket, "autoorg-2xcpu") == before
    finally:
        with_exit = os.waitpid(pid, os.WNOHANG)
        if with_exit == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
        run_cli("down", cwd=repo)
