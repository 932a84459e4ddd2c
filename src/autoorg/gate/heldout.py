"""The held-out check of a promotion: the new head's re-runs against the old head's gate runs, scored by the task's
`heldout:` evaluator on a split no agent sees a number for. A promotion whose held-out gain is negative beyond
the noise (HELDOUT_Z standard errors) is flagged as possible val overfitting; it is not undone."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from autoorg import workspace
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.stats import pooled_noise

HELDOUT_Z = 2.0


@dataclass(frozen=True)
class HeldoutCheck:
    mean: float  # the new head's held-out mean (its verification re-runs)
    head_mean: float  # the old head's (its baselines and the re-runs that promoted it)
    n: int
    head_n: int
    delta: float  # mean - head_mean
    band: float | None  # HELDOUT_Z standard errors of the difference; None while σ is unknown
    worse: bool

    def columns(self) -> dict[str, Any]:
        """The promotions row's held-out columns."""
        return {"heldout_mean": self.mean, "heldout_head_mean": self.head_mean, "heldout_delta": self.delta,
                "heldout_band": self.band, "heldout_worse": int(self.worse)}


def heldout_values(rows: list[dict[str, Any]]) -> list[float]:
    return [r["heldout"] for r in rows if r.get("heldout") is not None and math.isfinite(r["heldout"])]


def check_heldout(ctx: OrgContext, old_head: str, reruns: list[dict[str, Any]], slot_class: str,
                  sigma: float | None) -> HeldoutCheck | None:
    """Compare the new head's re-runs with the old head's gate runs on the held-out split; None when the task has
    no held-out split or either side has no score. `sigma` (the val noise) stands in while the held-out scores
    are too few to give their own."""
    if not ctx.task.heldout:
        return None
    tree = workspace.tree_of(ctx.repo, old_head)
    new = heldout_values(reruns)
    old = heldout_values(ledger.runs_of_tree(ctx.paths, tree, slot_class, ("baseline", "verify")))
    if not new or not old:
        return None
    mean, head_mean = statistics.fmean(new), statistics.fmean(old)
    noise_ = pooled_noise([new, old])
    spread = noise_.sigma if noise_.dof >= 2 else sigma
    band = HELDOUT_Z * spread * math.sqrt(1 / len(new) + 1 / len(old)) if spread is not None else None
    gain = ctx.task.improvement(mean, head_mean)
    worse = band is not None and gain < -band
    return HeldoutCheck(mean, head_mean, len(new), len(old), mean - head_mean, band, worse)


def describe(ctx: OrgContext, check: HeldoutCheck | None) -> str:
    """One phrase for the board and the messages: the held-out gain beside the val gain."""
    if check is None:
        return ""
    band = f", band {check.band:.4g}" if check.band is not None else ""
    text = (f"held-out {ctx.task.metric} {check.mean:.6g} vs head {check.head_mean:.6g} "
            f"(n={check.n} vs {check.head_n}): {check.delta:+.4g}{band}")
    return text + ("; held-out: worse — possible val overfitting" if check.worse else "")
