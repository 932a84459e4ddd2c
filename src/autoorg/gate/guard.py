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


def gate_head(ctx: OrgContext) -> str:
    """The last program head the gate itself made (or started from)."""
    start = org_manifest(ctx.paths, ctx.repo, ctx.state.base, ctx.task)
    later = [p for p in ledger.promotions(ctx.paths) if p["ts"] >= start.taken]
    return later[-1]["new_head"] if later else start.head


def revert_foreign_move(ctx: OrgContext, log: Say) -> bool:
    """Put the program branch back where the gate left it; returns whether it had moved."""
    expected, found = gate_head(ctx), ctx.program_head()
    if found == expected or any(v["head"] == expected and v["commit_sha"] == found
                                for v in ledger.verifications(ctx.paths, status="promoting")):
        return False
    branch = ctx.program_branch
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
