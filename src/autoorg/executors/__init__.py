"""Where a run executes, behind one protocol, chosen by the org's spec (`executor:`).

  local  a detached `autoorg exp worker <id>` per run on this machine; the command on a slot leased by flock
  ray    the same detached worker (the run's driver and its ledger writer), the command a Ray task that asks for
         the slot's resources, so Ray places it and no GPU is booked twice across the cluster
"""

from __future__ import annotations

from typing import Any, Protocol

from autoorg.executors.local import LocalExecutor
from autoorg.executors.ray import LOST, RayExecutor
from autoorg.experiments.context import OrgContext
from autoorg.experiments.run import Job, SlotRun
from autoorg.paths import OrgPaths
from autoorg.spec import ExecutorSpec, OrgSpec

NODE_LOST = f"crash: {LOST}"  # the verdict of a run whose Ray node died under it (the gate runs it again)


class Executor(Protocol):
    name: str

    def launch(self, ctx: OrgContext, job: Job) -> SlotRun | None:
        """Run an exported job on a slot and measure it (None: it was cancelled before it started)."""
        ...

    def spawn_worker(self, paths: OrgPaths, exp: str) -> int:
        """Start the detached worker that executes a queued run; returns its pid."""
        ...

    def runner_alive(self, row: dict[str, Any]) -> bool: ...

    def kill_orphaned_run(self, paths: OrgPaths, exp: str) -> list[int]: ...

    def cancel_runs(self, paths: OrgPaths, exps: list[str], why: str = "cancelled", *,
                    orphans: bool = False) -> list[str]: ...

    def stop_runs(self, paths: OrgPaths) -> list[str]: ...


def executor_for(spec: OrgSpec | ExecutorSpec) -> Executor:
    """The executor an org's spec selects."""
    chosen = spec.executor if isinstance(spec, OrgSpec) else spec
    if chosen.kind == "ray":
        return RayExecutor(chosen)
    return LocalExecutor()


__all__ = ["NODE_LOST", "Executor", "LocalExecutor", "RayExecutor", "executor_for"]
