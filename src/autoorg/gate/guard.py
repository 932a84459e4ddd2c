"""Only the gate moves the program branch: a move it did not make is reverted, recorded and reported.

The last head the gate made is the latest promotion's new head, else the head the org started from (the
manifest `up` took). Anything else on `org/<tag>` — an agent's `git checkout org/<tag>` + commit, a run's
`git update-ref`, a person's merge — is put back with a compare-and-swap, so a promotion racing the check is
never undone. A promotion records its intent (a verification `promoting` from head H to commit C) before it
moves the branch, so a gate that died between the two finds the branch at C and keeps it.
"""

from __future__ import annotations

import contextlib

from autoorg import comms, workspace
from autoorg.errors import AutoorgError, Say
from autoorg.experiments import OrgContext, ledger
from autoorg.experiments.manifest import org_manifest


def gate_head(ctx: OrgContext, branch: str | None = None) -> str:
    """The last head the gate itself made (or started from) on a branch (default: the program branch): its latest
    promotion there or migration to it."""
    branch = branch or ctx.program_branch
    start = org_manifest(ctx.paths, ctx.repo, ctx.state.base, ctx.task)
    made = [(p["ts"], p["new_head"]) for p in ledger.promotions(ctx.paths)
            if (p["branch"] or ctx.program_branch) == branch and p["ts"] >= start.taken]
    made += [(m["ts"], m["new_head"]) for m in ledger.island_migrations(ctx.paths)
             if m["branch"] == branch and m["ts"] >= start.taken]
    return max(made)[1] if made else start.head


def revert_foreign_move(ctx: OrgContext, log: Say) -> bool:
    """Put the program branch (and each island's) back where the gate left it; returns whether one had moved."""
    did = False
    for branch in dict.fromkeys([ctx.program_branch, *ctx.lines()]):
        did = _revert(ctx, branch, log) or did
    return did


def _revert(ctx: OrgContext, branch: str, log: Say) -> bool:
    expected = gate_head(ctx, branch)
    if not workspace.branch_exists(ctx.repo, branch):  # deleted: made again where the gate left it
        workspace.create_branch(ctx.repo, branch, expected)
        log(f"{branch} was deleted; made again at {expected[:10]}")
        return True
    found = workspace.rev_parse(ctx.repo, branch)
    if found == expected or any(v["head"] == expected and v["commit_sha"] == found
                                and (v["branch"] or ctx.program_branch) == branch
                                for v in ledger.verifications(ctx.paths, status="promoting")):
        return False
    if not workspace.advance_branch(ctx.repo, branch, expected, found, why="revert a move the gate did not make"):
        return False  # it moved again meanwhile: the next step looks again
    ledger.add_branch_revert(ctx.paths, branch=branch, found=found, restored=expected)
    what = (f"{branch} had moved to {found[:10]} without the gate (only the gate moves it); it was put back at "
            f"{expected[:10]}")
    log(what)
    with contextlib.suppress(AutoorgError):
        comms.post_board(ctx.paths, "gate", what)
    with contextlib.suppress(AutoorgError):
        comms.send_message(ctx.paths, sender="gate", to="human", kind="system",
                           body=f"{what}. The commit it pointed at is kept: git log {found[:10]}.")
    return True
