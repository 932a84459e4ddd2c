"""Islands: groups of agents on their own program branches, and the gate's migration of the best island's head.

An org whose agents say `island: NAME` has one branch per island, `org/<tag>.island.<name>`, made at `up` from
the program head. Each island is an org of its own to the gate: its head gets its own K baselines, its agents'
runs are screened against it, and their candidates are verified against it and promoted onto it
(`verifications.branch`, `promotions.branch`). Every `processes.migrate.every` island promotions the gate
migrates: the island whose head has the best mean (its K or more runs on one slot class, never a seed an agent
chose) gives its head to the island whose head has the worst mean, whose branch is moved there (its agents are
told, and their unpromoted work stays on their own branches), and `org/<tag>` (the org's result) is moved to
the best head when it beats the head there. Every head on every branch is a chain of verified promotions from
the org's start: a migration picks among verified heads, it never makes a new claim. Each move is a
compare-and-swap recorded in `island_migrations`, so the guard knows them for the gate's own.
"""

from __future__ import annotations

import contextlib
from typing import Any

from autoorg import comms, workspace
from autoorg.errors import AutoorgError, Say
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.heads import HeadStats, baseline_need, head_stats, slot_classes


def due(ctx: OrgContext) -> bool:
    """Whether `migrate.every` island promotions landed since the latest migration."""
    every = ctx.spec.processes.migrate.every
    if not every or not ctx.spec.islands:
        return False
    moves = ledger.island_migrations(ctx.paths)
    since = moves[-1]["ts"] if moves else ""
    branches = set(ctx.island_branches().values())
    return sum(p["branch"] in branches and p["ts"] > since for p in ledger.promotions(ctx.paths)) >= every


def comparison_class(ctx: OrgContext) -> str | None:
    """The slot class islands are compared on: the GPU one when the org has GPU slots."""
    classes = slot_classes(ctx)
    return "gpu" if "gpu" in classes else (classes[0] if classes else None)


def island_stats(ctx: OrgContext, cls: str) -> dict[str, HeadStats]:
    return {island: head_stats(ctx, workspace.rev_parse(ctx.repo, branch), cls)
            for island, branch in ctx.island_branches().items()}


def migrate(ctx: OrgContext, log: Say) -> bool:
    """One migration when it is due and every island's head has its baseline; returns whether a branch moved.
    Waits while the receiving island has a verification in flight (moving its head would waste it)."""
    cls = comparison_class(ctx)
    if cls is None or not due(ctx):
        return False
    stats = island_stats(ctx, cls)
    k = baseline_need(ctx, cls)
    if any(s.n < k or s.mean is None for s in stats.values()):
        return False  # ensure_baselines is measuring the new heads
    rank = sorted(stats, key=lambda i: ctx.task.improvement(stats[i].mean or 0.0, 0.0))
    worst, best = rank[0], rank[-1]
    if stats[best].tree == stats[worst].tree:
        return False
    if not ctx.task.improvement(stats[best].mean or 0.0, stats[worst].mean or 0.0) > 0:
        return False
    branches = ctx.island_branches()
    busy = [v for v in ledger.verifications(ctx.paths) if v["status"] in ("running", "promoting")
            and v["branch"] == branches[worst]]
    if busy:
        return False
    moved = _move(ctx, branches[worst], stats[worst], stats[best], best, worst, cls, log)
    if moved:
        _tell_island(ctx, worst, best, stats[best])
    program = ctx.program_branch
    current = workspace.rev_parse(ctx.repo, program)
    if current != stats[best].head:
        org = head_stats(ctx, current, cls)
        if org.mean is None or org.n < k or ctx.task.improvement(stats[best].mean or 0.0, org.mean) > 0:
            moved = _move(ctx, program, org, stats[best], best, None, cls, log) or moved
    return moved


def _move(ctx: OrgContext, branch: str, old: HeadStats, new: HeadStats, from_island: str, to_island: str | None,
          cls: str, log: Say) -> bool:
    if not workspace.advance_branch(ctx.repo, branch, new.head, old.head, why=f"migrate island {from_island}"):
        return False  # it moved meanwhile: the next step looks again
    ledger.add_island_migration(ctx.paths, branch=branch, old_head=old.head, new_head=new.head,
                                from_island=from_island, to_island=to_island, slot_class=cls, from_mean=new.mean,
                                from_n=new.n, old_mean=old.mean, old_n=old.n)
    metric = ctx.task.metric
    before = f"{old.mean:.6g} over {old.n} runs" if old.mean is not None else "not measured"
    what = (f"migration: {branch} moved from {old.head[:10]} ({metric} {before}) to island {from_island}'s head "
            f"{new.head[:10]} ({metric} {new.mean:.6g} over {new.n} runs)")
    log(what)
    with contextlib.suppress(AutoorgError):
        comms.post_board(ctx.paths, "gate", what)
    return True


def _tell_island(ctx: OrgContext, island: str, source: str, head: HeadStats) -> None:
    branch = ctx.island_branches()[island]
    for agent in (a.name for a in ctx.spec.agents if a.island == island):
        with contextlib.suppress(AutoorgError):
            comms.send_message(ctx.paths, sender="gate", to=agent, kind="system",
                               body=f"Migration: island {source}'s head was better than yours, so {branch} is now "
                                    f"{head.head[:10]} ({ctx.task.metric} {head.mean:.6g} over {head.n} runs). "
                                    f"Start your next experiment from it: git merge {branch} (on a conflict, "
                                    f"git reset --hard {branch}; your earlier commits stay in git reflog).")


def island_summary(ctx: OrgContext) -> list[dict[str, Any]]:
    """Each island's branch, head, agents and mean on the comparison class (for results and status)."""
    cls = comparison_class(ctx)
    out = []
    for island, branch in ctx.island_branches().items():
        head = workspace.rev_parse(ctx.repo, branch)
        stats = head_stats(ctx, head, cls) if cls else None
        out.append({"island": island, "branch": branch, "head": head,
                    "agents": [a.name for a in ctx.spec.agents if a.island == island],
                    "mean": stats.mean if stats else None, "n": stats.n if stats else 0,
                    "promotions": sum(p["branch"] == branch for p in ledger.promotions(ctx.paths))})
    return out
