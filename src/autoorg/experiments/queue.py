"""Queueing: commit an agent's change, refuse what it may not touch, add a `queued` ledger row."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
from collections.abc import Iterator
from typing import Any

from autoorg import orgcode, workspace
from autoorg.compute.slots import agent_slots, lock_file
from autoorg.errors import RunnerError, StateError, TaskError
from autoorg.experiments import ledger, stop_rules
from autoorg.experiments.context import OrgContext
from autoorg.experiments.policy import boundary_violations
from autoorg.paths import atomic_write_text

# ---------------------------------------------------------------------------------------------------------------
# Queueing


def queue_run(ctx: OrgContext, *, kind: str, agent: str, commit: str, head: str, description: str, seed: int,
              budget: float, slot_class: str, candidate: str | None = None, **extra: Any) -> str:
    """Add a queued ledger row and runs/<id>/ with the diff against the program head; returns the id.
    `extra`: more columns (an agent's token use so far)."""
    repo = ctx.repo
    standard = budget == ctx.task.budget[slot_class]
    exp = ledger.add_experiment(ctx.paths, {
        "kind": kind, "agent": agent, "task": ctx.task.name, "commit_sha": commit,
        "tree": workspace.tree_of(repo, commit), "parent": workspace.parent_of(repo, commit), "head": head,
        "diff_stat": workspace.diff_stat(repo, head, commit), "description": description, "seed": seed,
        "budget": budget, "standard": int(standard), "slot_class": slot_class, "org_code": orgcode.record(ctx.org_code(), ctx.paths.orgcode),
        "candidate": candidate, **extra,
    })
    run_dir = ctx.paths.runs / exp
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "diff.patch", workspace.diff_text(repo, head, commit))
    return exp


def new_seed() -> int:
    return secrets.randbelow(2**31 - 1) + 1


@contextlib.contextmanager
def _worktree_locked(ctx: OrgContext, agent: str) -> Iterator[None]:
    """One submission at a time from an agent's worktree: two `git commit`s in one worktree race for its
    index.lock, and the second fails."""
    fd = lock_file(ctx.paths, f"worktree-{agent}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def queue_experiment(ctx: OrgContext, agent: str, description: str, *, budget: float | None = None,
                     seed: int | None = None, spend: dict[str, Any] | None = None) -> str:
    """Commit an agent's pending changes and queue them as an experiment. Refuses (committing nothing) a worktree
    that is not on the agent's own feature branch, and a change whose diff against the program head touches
    protected paths or paths outside the editable set. `spend`: the agent's model use so far (tokens, cost),
    stored with the row."""
    description = " ".join(description.split())
    stopped = stop_rules.refusal(ctx.paths, ctx.spec.processes.stop, agent)
    if stopped:
        raise RunnerError(f"refused: {stopped}; nothing was committed. Read `autoorg board` and your inbox")
    if not description:
        raise RunnerError('say what changed: autoorg exp run -m "what changed"')
    slots = agent_slots(ctx.spec, agent)
    cls = slots[0].cls
    if cls not in ctx.task.run:
        raise TaskError(f"task '{ctx.task.name}' has no run command for {cls} slots "
                        f"(it has: {', '.join(ctx.task.run)}); add run.{cls} to {ctx.task.path}")
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise RunnerError(f"--budget must be a positive number of seconds, not {budget}")
    if seed is not None and not -(2**63) <= seed < 2**63:  # what the ledger (SQLite) can hold
        raise RunnerError(f"--seed must be a whole number below 2**63 in size, not {seed}")
    worktree = ctx.worktree(agent)
    if not worktree.is_dir():
        raise StateError(f"agent {agent}'s worktree {worktree} is gone; `autoorg up` the org again")
    own = ctx.state.agent(agent).branch
    on = workspace.current_branch(worktree)
    if on != own:
        where = "a detached HEAD" if on == "HEAD" else f"branch {on}"
        raise RunnerError(f"refused: {agent}'s worktree is on {where}, not its own branch {own}; only the gate "
                          f"moves {ctx.program_branch}. Get back with `git switch {own}` and run again; nothing was "
                          "committed")
    with _worktree_locked(ctx, agent):
        return _commit_and_queue(ctx, agent, description, budget=budget, seed=seed, spend=spend, cls=cls)


def _commit_and_queue(ctx: OrgContext, agent: str, description: str, *, budget: float | None, seed: int | None,
                      spend: dict[str, Any] | None, cls: str) -> str:
    worktree = ctx.worktree(agent)
    head = ctx.head_of(agent)  # its island's head on an island
    tracked, untracked = workspace.pending_paths(worktree)
    # New files outside the editable paths (caches, outputs, notes) are not part of the change: left alone.
    new_files = [p for p in untracked if not boundary_violations(ctx.task, [p])]
    changed = set(tracked) | set(new_files) | set(workspace.changed_paths(worktree, head, "HEAD"))
    bad = boundary_violations(ctx.task, sorted(changed))
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise RunnerError(f"refused: the change touches paths agents may not edit: {shown}; editable: "
                          f"{', '.join(ctx.task.editable)}. Restore them (git checkout {ctx.branch_of(agent)} -- "
                          "PATH) and run again; nothing was committed")
    commit = (workspace.commit_paths(worktree, [*tracked, *new_files], description, author=agent)
              or workspace.head_commit(worktree))
    return queue_run(ctx, kind="exp", agent=agent, commit=commit, head=head, description=description,
                     seed=new_seed() if seed is None else seed, seed_chosen=int(seed is not None),
                     budget=ctx.task.budget[cls] if budget is None else float(budget), slot_class=cls,
                     **(spend or {}))
