"""A critic's review of each candidate before the gate spends verification compute on it (`processes: review:
{role: critic}` in the org file).

While an org has a review role, the gate starts verification re-runs only for candidates whose latest review
approves them. A refusal is recorded with its reason (the ledger's `reviews` table), turns the candidate's verdict
into `refused: <reason>` (so it is never verified), and is sent to its author.
"""

from __future__ import annotations

import contextlib
from typing import Any

from autoorg import comms
from autoorg.errors import AutoorgError
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.announce import tell_claimant

REFUSED = "refused"


class ReviewError(AutoorgError):
    """A review that cannot be taken: no review process, not a candidate, not a reviewer, no reason."""


def review_role(ctx: OrgContext) -> str | None:
    return ctx.spec.processes.review.role


def decision(ctx: OrgContext, exp: str) -> str | None:
    """The latest review decision on a candidate (approve | refuse), None when it was not reviewed."""
    found = ledger.reviews(ctx.paths, exp=exp)
    return str(found[-1]["decision"]) if found else None


def awaiting_review(ctx: OrgContext) -> list[dict[str, Any]]:
    """Candidates no reviewer has decided on yet (none while the org has no review process)."""
    if review_role(ctx) is None:
        return []
    return [r for r in ledger.experiments(ctx.paths, kinds=("exp",), verdict="candidate")
            if decision(ctx, r["exp"]) is None]


def cleared_for_verification(ctx: OrgContext, cand: dict[str, Any]) -> bool:
    return review_role(ctx) is None or decision(ctx, cand["exp"]) == "approve"


def review_candidate(ctx: OrgContext, exp: str, reviewer: str, verdict: str, reason: str) -> None:
    """Record `reviewer`'s decision (approve | refuse) on candidate `exp` and tell its author."""
    role = review_role(ctx)
    if role is None:
        raise ReviewError("this org has no review process (processes: review: {role: critic} in its org file)")
    if reviewer != "human" and ctx.spec.agent(reviewer).role != role:
        raise ReviewError(f"{reviewer} is not a reviewer here: candidates are reviewed by the {role} role or human")
    reason = " ".join(reason.split())
    if verdict == "refuse" and not reason:
        raise ReviewError("a refusal needs a reason the author can act on (--reason \"...\")")
    row = ledger.get_experiment(ctx.paths, exp)
    if row["kind"] != "exp" or row["verdict"] != "candidate":
        raise ReviewError(f"{exp} is not a candidate awaiting review (its verdict: {row['verdict']})")
    if verdict == "refuse" and not ledger.replace_verdict(ctx.paths, exp, "candidate", f"{REFUSED}: {reason}"):
        raise ReviewError(f"{exp} was taken up by the gate meanwhile; its verdict is no longer candidate")
    ledger.add_review(ctx.paths, exp=exp, reviewer=reviewer, decision=verdict, reason=reason)
    what = f"Your candidate {exp} ({row['description']})"
    if verdict == "refuse":
        tell_claimant(ctx, row, f"{what} was refused by {reviewer} before verification: {reason}")
    else:
        tell_claimant(ctx, row, f"{what} was approved by {reviewer}" + (f" ({reason})" if reason else "") +
                      "; the gate will verify it.")
    with contextlib.suppress(AutoorgError):
        comms.post_board(ctx.paths, "gate", f"review of {exp} by {reviewer}: {verdict}" +
                         (f" ({reason})" if reason else ""))
