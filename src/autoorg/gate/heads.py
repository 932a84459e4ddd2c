"""A program head's numbers: the gate's settings, the org's noise (single runs and same-seed pairs), the head's
runs and mean."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from autoorg import workspace
from autoorg.compute import slots
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.stats import Noise, head_runs_needed, pair_noise, pooled_noise
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec


@dataclass(frozen=True)
class GateSettings:
    repeats: int  # most same-seed pairs per verification (R)
    z: float  # one-sided z of the promotion test
    floor: float  # smallest band, as a fraction of the head's mean
    baseline_repeats: int  # runs of a program head before it is judged against (K)


def settings(spec: OrgSpec) -> GateSettings:
    """The org's `processes.gate` and `processes.baseline`, already validated (defaults: spec/processes.py)."""
    gate, baseline = spec.processes.gate, spec.processes.baseline
    return GateSettings(repeats=gate.repeats, z=gate.z, floor=gate.floor, baseline_repeats=baseline.repeats)


def noise(paths: OrgPaths, slot_class: str) -> Noise:
    return pooled_noise(ledger.replicate_groups(paths, slot_class))


def baseline_need(ctx: OrgContext, slot_class: str) -> int:
    """The runs a program head needs before the gate judges anything against it (gate.stats.head_runs_needed)."""
    return head_runs_needed(settings(ctx.spec).baseline_repeats, noise(ctx.paths, slot_class).dof)


def same_seed_pairs(rows: list[dict[str, Any]], head: str) -> list[tuple[float, float]]:
    """(the head's value, the candidate's value) of each same-seed pair of a verification's runs that both
    measured, in the order they were queued."""
    ok = [r for r in rows if r["verdict"] == "ok" and r["metric"] is not None]
    head_arm = {r["seed"]: r["metric"] for r in ok if r["commit_sha"] == head}
    cand_arm = {r["seed"]: r["metric"] for r in ok if r["commit_sha"] != head}
    return [(head_arm[s], cand_arm[s]) for s in head_arm if s in cand_arm]


def pair_noise_of(ctx: OrgContext, slot_class: str, gains: list[float], *,
                  leave_out: int) -> tuple[Noise, ...]:
    """σ_d's estimates for the verification `leave_out`, whose gains so far are `gains`, on a slot class: √2·σ,
    and its gains' spread pooled with every other verification's (gate.stats.pair_noise)."""
    rows = {r["exp"]: r for r in ledger.experiments(ctx.paths, kinds=("verify",)) if r["slot_class"] == slot_class}
    groups = []
    for ver in ledger.verifications(ctx.paths):
        if ver["id"] == leave_out or ver["why"].startswith("ignores its seed"):
            continue
        pairs = same_seed_pairs([rows[e] for e in ver["runs"] if e in rows], ver["head"])
        if len(pairs) > 1:
            groups.append([ctx.task.improvement(c, h) for h, c in pairs])
    return pair_noise(gains, groups, noise(ctx.paths, slot_class))


@dataclass(frozen=True)
class HeadStats:
    head: str
    tree: str
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None


def head_stats(ctx: OrgContext, head: str, slot_class: str) -> HeadStats:
    """A program head's runs: baselines and agents' runs of its exact tree (one per seed; never a seed the agent
    chose, which may be a lucky one), the head's arm of every paired verification against it, plus the re-runs of
    the verification that promoted it (selected for being good, so they can only make the head look better)."""
    tree = workspace.tree_of(ctx.repo, head)
    rows = ledger.runs_of_tree(ctx.paths, tree, slot_class, ("baseline", "exp", "verify"))
    promoted = {p["exp"] for p in ledger.promotions(ctx.paths) if p["new_head"] == head}
    by_seed: dict[int, float] = {}
    for r in rows:
        if r["seed_chosen"]:
            continue
        if r["kind"] != "verify" or r["candidate"] in promoted or r["commit_sha"] == head:
            by_seed.setdefault(r["seed"], r["metric"])
    return HeadStats(head, tree, tuple(by_seed.values()))


def slot_classes(ctx: OrgContext) -> list[str]:
    return sorted({s.cls for s in slots.org_slots(ctx.spec)} & set(ctx.task.run))
