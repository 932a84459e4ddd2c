"""The local executor: each queued run in a detached `autoorg exp worker <id>` process on this machine, on a slot
leased by flock (experiments.run.run_here).

A worker is found again by its pid and the kernel's start time of that pid (a reused pid is not mistaken for it).
The Ray executor keeps these workers (each is its run's driver and the ledger's writer for it) and replaces only
where the command runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from autoorg import clock
from autoorg.environment import without_secrets
from autoorg.experiments import ledger
from autoorg.experiments.context import OrgContext
from autoorg.experiments.process import RUN_MARKER, exited, kill_run, process_start
from autoorg.experiments.run import Job, SlotRun, run_here
from autoorg.paths import OrgPaths

STOP_WAIT_S = 10.0  # how long `down` waits for a signalled worker to take its run down before killing it


def spawn_worker(paths: OrgPaths, exp: str) -> int:
    """Run a queued experiment in a detached `autoorg exp worker <id>` (its output: runs/<id>/runner.log)."""
    log = open(paths.runs / exp / "runner.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "worker", exp], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=_worker_env(paths))
    finally:
        log.close()
    ledger.update_experiment(paths, exp, pid=proc.pid, pid_start=process_start(proc.pid))
    return proc.pid


def _worker_env(paths: OrgPaths) -> dict[str, str]:
    """The caller's environment less its secrets (an agent's key stays with the agent) and less the marker of a
    run it may itself be part of."""
    env = without_secrets(os.environ)
    env.pop(RUN_MARKER, None)
    return {**env, "AUTOORG_HOME": str(paths.home)}


def kill_orphaned_run(paths: OrgPaths, exp: str) -> list[int]:
    """Kill what is left of a run whose runner is gone (found by the marker in its environment)."""
    return kill_run(str(paths.runs / exp))


def runner_alive(row: dict[str, Any]) -> bool:
    pid = row.get("pid")
    if not pid:
        return True  # not started yet: the queuer records the pid right after spawning
    start = process_start(int(pid))
    return start is not None and (row.get("pid_start") in (None, start)) and not exited(int(pid))


def _is_worker(pid: int, exp: str) -> bool:
    """Is pid the detached `autoorg exp worker <exp>` of this experiment (and not a pane's own runner)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"worker" in argv and exp.encode() in argv


def cancel_runs(paths: OrgPaths, exps: list[str], why: str = "cancelled", *, orphans: bool = False) -> list[str]:
    """Stop queued or running experiments that run in detached workers: the ledger says `why` first (so the
    worker's own crash record does not replace it), then the worker gets SIGTERM (it kills its run's process
    group). Runs of an agent's own `exp run` are left to it, unless `orphans`: then every run is stopped, and
    the processes of a run without a live worker are killed. Returns the experiments stopped."""
    rows = {exp: ledger.get_experiment(paths, exp) for exp in exps}
    stopped = ledger.claim_many(paths, exps, why, finished=clock.now_iso(), pid=None)
    for exp in stopped:
        pid = rows[exp].get("pid")
        if pid and runner_alive(rows[exp]) and _is_worker(int(pid), exp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        elif orphans:  # a dead runner, or an agent's `exp run` whose pane is gone
            kill_orphaned_run(paths, exp)
    return stopped


def stop_runs(paths: OrgPaths) -> list[str]:
    """Stop every run of an org (for `autoorg down`, after its session is gone): queued and running ones, gate
    runs and orphans included, so nothing is left `queued` or `running` for the next `up` to call a crash."""
    end = time.monotonic() + STOP_WAIT_S
    # the org is `stopping` and `down` holds the gate's lock: no gate step queues a run behind this cancel
    rows = [r for v in ledger.UNFINISHED for r in ledger.experiments(paths, verdict=v)]
    workers = [r for r in rows if r.get("pid") and runner_alive(r) and _is_worker(int(r["pid"]), r["exp"])]
    stopped = cancel_runs(paths, [r["exp"] for r in rows], ledger.ORG_STOPPED, orphans=True)
    # `down` returns when the runs are gone: wait for the signalled workers to take their runs down, then kill
    # whatever is left of a run (a worker that did not exit in time, a process that left the run's group)
    while time.monotonic() < end and any(runner_alive(r) for r in workers):
        time.sleep(0.05)
    for exp in stopped:
        kill_orphaned_run(paths, exp)
    return sorted(set(stopped))


class LocalExecutor:
    """Runs on this machine: a detached worker per run, the command on a slot leased by flock."""

    name = "local"

    def launch(self, ctx: OrgContext, job: Job) -> SlotRun | None:
        return run_here(ctx, job)

    def spawn_worker(self, paths: OrgPaths, exp: str) -> int:
        return spawn_worker(paths, exp)

    def runner_alive(self, row: dict[str, Any]) -> bool:
        return runner_alive(row)

    def kill_orphaned_run(self, paths: OrgPaths, exp: str) -> list[int]:
        return kill_orphaned_run(paths, exp)

    def cancel_runs(self, paths: OrgPaths, exps: list[str], why: str = "cancelled", *,
                    orphans: bool = False) -> list[str]:
        return cancel_runs(paths, exps, why, orphans=orphans)

    def stop_runs(self, paths: OrgPaths) -> list[str]:
        return stop_runs(paths)
