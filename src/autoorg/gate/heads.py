"""A program head's numbers: the gate's settings, the org's noise, the head's runs and mean, direction."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from autoorg import workspace
from autoorg.compute import slots
from autoorg.experiments import OrgContext, ledger
from autoorg.gate.stats import Noise, pooled_noise
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec, TaskSpec

Log = Callable[[str], None]
# Chosen by simulating the whole procedure in a fresh org (σ known only from the baseline): a 3σ win is promoted
# ~96% of the time, a no-effect change ~0.1% (~0.4% of those the screen lets through). R = K also means a promoted
# head already has K runs of its own: no new baseline after a promotion.
DEFAULTS = {"repeats": 8, "z": 2.9, "floor": 0.0001, "baseline_repeats": 8}


@dataclass(frozen=True)
class GateSettings:
    repeats: int  # re-runs per candidate (R)
    z: float  # one-sided z of the promotion test
    floor: float  # smallest band, as a fraction of the head's mean
    baseline_repeats: int  # runs of a program head before it is judged against (K)


def settings(spec: OrgSpec) -> GateSettings:
    gate = spec.processes.get("gate", {})
    baseline = spec.processes.get("baseline", {})
    return GateSettings(repeats=max(1, int(gate.get("repeats", DEFAULTS["repeats"]))),
                        z=float(gate.get("z", DEFAULTS["z"])), floor=float(gate.get("floor", DEFAULTS["floor"])),
                        baseline_repeats=max(2, int(baseline.get("repeats", DEFAULTS["baseline_repeats"]))))


def noise(paths: OrgPaths, slot_class: str) -> Noise:
    return pooled_noise(ledger.replicate_groups(paths, slot_class))

def improvement(task: TaskSpec, value: float, reference: float) -> float:
    """How much better value is than reference, in the metric's units (positive = better)."""
    return reference - value if task.direction == "minimize" else value - reference


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
