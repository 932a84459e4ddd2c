"""Runs whose runner died: their processes are killed, their rows get a verdict, their agent gets its answer, and
`down` leaves nothing queued or running. Real workers, real process trees, a real org."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoorg import comms, executors, experiments, gate
from autoorg.experiments import ledger
from autoorg.experiments.process import run_processes
from autoorg.gate.verify import gate_lock
from autoorg.paths import OrgPaths
from autoorg.state import update_state
from autoorg.testing import retry_until, run_cli
from autoorg.testing.experiments import TRAIN, drive_gate, start_org
from tests.exp_support import add_synthetic

# The CLI as an agent's pane runs it in the foreground: Ctrl-C raises KeyboardInterrupt even where this suite was
# started in the background of a script (`bash -c 'pytest & wait'` hands its children SIGINT ignored, and `exp run`
# then never saw the signal: the hang seen in two CI runs). Its threads' stacks go to stderr on SIGUSR1.
TRACEABLE_CLI = """\
import faulthandler, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
faulthandler.register(signal.SIGUSR1, all_threads=True)
from autoorg.cli import main
sys.exit(main(sys.argv[1:]))
"""

# A run that starts a child in a session of its own (out of the run's process group), then trains for ever
ESCAPING = """\
import subprocess, time
subprocess.Popen(["sleep", "1000"], start_new_session=True)
print('@metric {"step": 1}', flush=True)
time.sleep(1000)
"""


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo, evaluator=False)  # its train.py is replaced wholesale
    return start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)


def _sleeping_child(pids: list[int]) -> bool:
    """Is one of pids the run's `sleep 1000` child (so the whole tree is up)?"""
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"1000"]:
                return True
        except OSError:
            continue
    return False


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _submit_escaping_run(org: OrgPaths, tmp_path: Path) -> tuple[str, int, list[int]]:
    """bob submits ESCAPING; returns (exp, worker pid, the run's pids) once it runs."""
    (org.worktree("bob") / TRAIN).write_text(ESCAPING)
    proc = run_cli("exp", "submit", "-m", "escapes", "--budget", "300", cwd=org.worktree("bob"),
                   env={"AUTOORG_AGENT": "bob", "AUTOORG_HOME": str(org.home)})
    assert proc.returncode == 0, proc.stderr
    exp = proc.stdout.split()[0]
    # found from outside by the run's marker (inside a PID namespace a run does not know its own host pids)
    marker = str(org.runs / exp)
    retry_until(lambda: _sleeping_child(run_processes(marker)), timeout=30, message="the run to start")
    run_pids = run_processes(marker)
    worker = ledger.get_experiment(org, exp)["pid"]
    assert worker and all(not _gone(p) for p in run_pids)
    return exp, int(worker), run_pids


def test_a_run_whose_worker_was_killed_is_killed_recorded_and_answered(org: OrgPaths, tmp_path: Path) -> None:
    exp, worker, run_pids = _submit_escaping_run(org, tmp_path)
    os.kill(worker, signal.SIGKILL)
    drive_gate(org, lambda: ledger.get_experiment(org, exp)["verdict"] == "crash: runner died", timeout=30)
    retry_until(lambda: all(_gone(p) for p in run_pids), timeout=15, message="the orphaned run to be killed")
    msgs = retry_until(lambda: [m for m in comms.read_inbox(org, "bob") if m.kind == "result" and m.exp == exp],
                       timeout=10, message="bob's result message")
    assert msgs[0].body.startswith(f"{exp} (escapes) crash: runner died")


def test_down_kills_orphaned_runs_and_cancels_what_never_ran(org: OrgPaths, tmp_path: Path) -> None:
    exp, worker, run_pids = _submit_escaping_run(org, tmp_path)
    ctx = experiments.load_context(org)
    head = ctx.program_head()
    never_ran = experiments.queue_run(ctx, kind="exp", agent="alice", commit=head, head=head, description="queued",
                                      seed=1, budget=ctx.task.budget["cpu"], slot_class="cpu")
    os.kill(worker, signal.SIGKILL)
    down = run_cli("down", env={"AUTOORG_HOME": str(org.home)})
    assert down.returncode == 0, down.stderr
    retry_until(lambda: all(_gone(p) for p in run_pids), timeout=15, message="the orphaned run to be killed")
    rows = ledger.experiments(org)
    assert not [r for r in rows if r["verdict"] in ledger.UNFINISHED]
    assert ledger.get_experiment(org, exp)["verdict"] in ("crash: runner died", "cancelled: the org was stopped")
    assert ledger.get_experiment(org, never_ran)["verdict"] == "cancelled: the org was stopped"


def test_a_gate_step_while_down_is_under_way_queues_nothing(org: OrgPaths) -> None:
    """An exiting worker hands its slot to the gate; while `down` stops the org that step must not queue fresh
    baselines behind the cancel (they were left `queued` after `down` under load)."""
    def status(word: str) -> None:
        update_state(org, lambda now: setattr(now, "status", word))

    status("stopping")  # as `down` does first; the daemon exits on it
    with gate_lock(org, wait_s=30) as held:
        assert held
        rows = [r["exp"] for v in ledger.UNFINISHED for r in ledger.experiments(org, verdict=v)]
        executors.LocalExecutor().cancel_runs(org, rows, "cancelled: the org was stopped")
    assert gate.step(org, log=lambda _line: None) is False
    assert not [r for r in ledger.experiments(org) if r["verdict"] in ledger.UNFINISHED]
    status("running")  # the same step on a running org queues the baselines the head lacks
    assert gate.step(org, log=lambda _line: None) is True
    assert [r for r in ledger.experiments(org) if r["verdict"] in ledger.UNFINISHED and r["kind"] == "baseline"]


@pytest.mark.parametrize(("status", "verdict"), [("stopping", ledger.ORG_STOPPED), ("running", "crash: interrupted")])
def test_an_exp_run_interrupted_by_down_is_cancelled_and_by_hand_a_crash(org: OrgPaths, status: str, verdict: str,
                                                                          tmp_path: Path) -> None:
    """An agent's own `exp run` gets Ctrl-C when `down` stops the agents: a run the org stopped is no crash of its
    code (bench figures counted those as crashes); a person's Ctrl-C on a running org still is one."""
    (org.worktree("alice") / TRAIN).write_text(ESCAPING)
    stderr = tmp_path / "exp-run.err"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", TRACEABLE_CLI, "exp", "run", "-m", "trains for ever",
                                 "--budget", "300"],
                                cwd=org.worktree("alice"), stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "AUTOORG_AGENT": "alice", "AUTOORG_HOME": str(org.home)})
    try:
        row = retry_until(lambda: [r for r in ledger.experiments(org, agent="alice") if r["verdict"] == "running"],
                          timeout=30, message="alice's run to start")[0]
        update_state(org, lambda now: setattr(now, "status", status))
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # where it is stuck, for the failure message
            time.sleep(2)
            pytest.fail(f"exp run still alive 30 s after SIGINT; its stacks and stderr:\n{stderr.read_text()}")
    finally:
        proc.kill()
    assert ledger.get_experiment(org, row["exp"])["verdict"] == verdict


def test_a_queued_run_whose_runner_died_is_cancelled_not_a_crash(org: OrgPaths) -> None:
    ctx = experiments.load_context(org)
    head = ctx.program_head()
    exp = experiments.queue_run(ctx, kind="exp", agent="alice", commit=head, head=head, description="waits",
                                seed=1, budget=ctx.task.budget["cpu"], slot_class="cpu")
    ledger.update_experiment(org, exp, pid=2**22 + 12345, pid_start="1")  # no such process
    drive_gate(org, lambda: ledger.get_experiment(org, exp)["verdict"] not in ledger.UNFINISHED, timeout=30)
    assert ledger.get_experiment(org, exp)["verdict"] == "cancelled: its runner died before it started"
    assert ledger.tsv_status(ledger.get_experiment(org, exp)) != "crash"


# A run that finishes normally but leaves a helper behind in a session of its own
LEAVES_A_HELPER = """\
import subprocess
subprocess.Popen(["sleep", "1000"], start_new_session=True)
print('@metric {"final": true, "val_loss": 1.0, "train_s": 0.1}', flush=True)
"""


def test_what_a_run_started_outside_its_group_dies_when_it_ends(org: OrgPaths, tmp_path: Path) -> None:
    (org.worktree("alice") / TRAIN).write_text(LEAVES_A_HELPER)
    proc = run_cli("exp", "run", "-m", "leaves a helper", cwd=org.worktree("alice"), timeout=120,
                   env={"AUTOORG_AGENT": "alice", "AUTOORG_HOME": str(org.home)})
    assert proc.returncode == 0, proc.stderr
    exp = ledger.experiments(org, agent="alice")[-1]["exp"]
    assert run_processes(str(org.runs / exp)) == []  # killed before the result was recorded, not eventually
