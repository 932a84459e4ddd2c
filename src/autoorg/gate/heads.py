"""A program head's numbers: the gate's settings, the org's noise, the head's runs and mean."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from autoorg import workspace
from autoorg.compute import slots
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.stats import Noise, pooled_noise
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec


@dataclass(frozen=True)
class GateSettings:
    repeats: int  # re-runs per candidate (R)
    z: float  # one-sided z of the promotion test
    floor: float  # smallest band, as a fraction of the head's mean
    baseline_repeats: int  # runs of a program head before it is judged against (K)


def settings(spec: OrgSpec) -> GateSettings:
    """The org's `processes.gate` and `processes.baseline`, already validated (defaults: spec/processes.py)."""
    gate, baseline = spec.processes.gate, spec.processes.baseline
    return GateSettings(repeats=gate.repeats, z=gate.z, floor=gate.floor, baseline_repeats=baseline.repeats)


def noise(paths: OrgPaths, slot_class: str) -> Noise:
    return pooled_noise(ledger.replicate_groups(paths, slot_class))


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
    """A program head's runs: baselines and agents' runs of its exact tree (one per seed), plus the re-runs of
    the verification that promoted it (selected for being good, so they can only make the head look better)."""
    tree = workspace.tree_of(ctx.repo, head)
    rows = ledger.runs_of_tree(ctx.paths, tree, slot_class, ("baseline", "exp", "verify"))
    promoted = {p["exp"] for p in ledger.promotions(ctx.paths) if p["new_head"] == head}
    by_seed: dict[int, float] = {}
    for r in rows:
        if r["kind"] != "verify" or r["candidate"] in promoted:
            by_seed.setdefault(r["seed"], r["metric"])
    return HeadStats(head, tree, tuple(by_seed.values()))


def slot_classes(ctx: OrgContext) -> list[str]:
    return sorted({s.cls for s in slots.org_slots(ctx.spec)} & set(ctx.task.run))
