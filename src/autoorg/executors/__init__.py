"""Where a run executes. `local`: a detached worker process on this machine, found again by pid and start time."""

from __future__ import annotations

from autoorg.executors.local import cancel_runs, kill_orphaned_run, runner_alive, spawn_worker, stop_runs

__all__ = ["cancel_runs", "kill_orphaned_run", "runner_alive", "spawn_worker", "stop_runs"]
