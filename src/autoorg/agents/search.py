"""How the offline researcher picks its next configuration: `backend: heuristic` with `model: STRATEGY`.

  local   (the default) local search around the verified best, using the whole org's evidence (researcher.py)
  random  uniform random search over the task's knobs: the bench's floor
  tpe     Optuna's Tree-structured Parzen Estimator over the knobs, told every measured configuration in the org
  keep    autoresearch's loop: a step from *this agent's own* best single run, kept if one run beats it; it never
          waits for verification (the gate still re-runs what passes screening, so the bench can count how many
          of its kept changes hold up)

A strategy is stateless between calls: it reads the evidence (the org's ledger, grouped by configuration) each
time, so a restarted agent goes on where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from autoorg.agents.knobs import from_unit, to_unit
from autoorg.errors import AutoorgError
from autoorg.spec import Knob

if TYPE_CHECKING:
    import optuna

STRATEGIES = ("local", "random", "tpe", "keep")
PROPOSAL_TRIES = 60
TPE_STARTUP = 8  # random trials before TPE models the evidence (Optuna's own default is 10)
KEEP_STEP = 0.15  # the autoresearch loop's step, in unit range


@dataclass
class Observation:
    """One measured configuration: its knob values, the mean of its runs at the task's budget, whether this
    agent ran it, and the best single run of it."""

    values: dict[str, Any]
    mean: float
    mine: bool = False
    best_single: float | None = None


class Strategy(Protocol):
    name: str

    def propose(self, knobs: list[Knob], head: dict[str, Any], seen: list[Observation],
                tried: Callable[[dict[str, Any]], bool], better: Callable[[float, float], bool],
                rng: random.Random) -> tuple[dict[str, Any], str]: ...


def _changes(knobs: list[Knob], old: dict[str, Any], new: dict[str, Any]) -> str:
    moved = [f"{k.name} {old.get(k.name)!r} → {new[k.name]!r}" for k in knobs if new.get(k.name) != old.get(k.name)]
    return "; ".join(moved) or "no change"


class RandomSearch:
    name = "random"

    def propose(self, knobs: list[Knob], head: dict[str, Any], seen: list[Observation],
                tried: Callable[[dict[str, Any]], bool], better: Callable[[float, float], bool],
                rng: random.Random) -> tuple[dict[str, Any], str]:
        for _ in range(PROPOSAL_TRIES):
            proposal = {**head, **{k.name: from_unit(k, rng.random()) for k in knobs}}
            if not tried(proposal):
                return proposal, f"{_changes(knobs, head, proposal)} (uniform random over every knob)"
        raise AutoorgError("random search found no untried configuration in 60 draws")


class TPESearch:
    """Optuna's TPE, rebuilt from the evidence at every call (the ledger is the study's storage)."""

    name = "tpe"

    def propose(self, knobs: list[Knob], head: dict[str, Any], seen: list[Observation],
                tried: Callable[[dict[str, Any]], bool], better: Callable[[float, float], bool],
                rng: random.Random) -> tuple[dict[str, Any], str]:
        import optuna  # ~0.5 s to import: only for an agent that uses TPE

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        minimize = better(0.0, 1.0)
        space = {k.name: _distribution(k) for k in knobs}
        for _ in range(PROPOSAL_TRIES):
            sampler = optuna.samplers.TPESampler(seed=rng.randrange(2**31), n_startup_trials=TPE_STARTUP)
            study = optuna.create_study(direction="minimize" if minimize else "maximize", sampler=sampler)
            for obs in seen:
                params = {name: obs.values[name] for name in space if name in obs.values}
                if len(params) == len(space) and all(_inside(space[n], v) for n, v in params.items()):
                    study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=obs.mean))
            trial = study.ask(space)
            proposal = {**head, **trial.params}
            if not tried(proposal):
                n = len(study.trials) - 1
                return proposal, f"{_changes(knobs, head, proposal)} (TPE over {n} measured configurations)"
        raise AutoorgError("TPE proposed only configurations already tried")


def _distribution(knob: Knob) -> optuna.distributions.BaseDistribution:
    import optuna

    if knob.type == "choice":
        return optuna.distributions.CategoricalDistribution(list(knob.choices))
    if knob.type == "bool":
        return optuna.distributions.CategoricalDistribution([False, True])
    lo, hi = float(knob.low or 0.0), float(knob.high or 1.0)
    if knob.type == "int":
        return optuna.distributions.IntDistribution(int(lo), int(hi), log=knob.log and lo > 0)
    return optuna.distributions.FloatDistribution(lo, hi, log=knob.log and lo > 0)


def _inside(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


class KeepIfBetter:
    """autoresearch: one knob at a time from this agent's own best single run; nothing verified."""

    name = "keep"

    def propose(self, knobs: list[Knob], head: dict[str, Any], seen: list[Observation],
                tried: Callable[[dict[str, Any]], bool], better: Callable[[float, float], bool],
                rng: random.Random) -> tuple[dict[str, Any], str]:
        centre, where = head, "the starting point"
        best: float | None = None
        for obs in seen:
            if obs.mine and obs.best_single is not None and (best is None or better(obs.best_single, best)):
                best, centre, where = obs.best_single, {**head, **obs.values}, f"my best run ({obs.best_single:.6g})"
        for attempt in range(PROPOSAL_TRIES):
            k = rng.choice(knobs)
            step = KEEP_STEP * (1 + attempt / 10) * (1 if rng.random() < 0.5 else -1)
            proposal = {**centre, k.name: from_unit(k, to_unit(k, centre[k.name]) + step)}
            if proposal != centre and not tried(proposal):
                return proposal, f"{_changes(knobs, centre, proposal)} (kept-if-better from {where})"
        raise AutoorgError("every neighbour of my best run has been tried")


def strategy(name: str) -> Strategy | None:
    """The strategy called `name`; None for `local` (the researcher's own search)."""
    table: dict[str, Strategy] = {"random": RandomSearch(), "tpe": TPESearch(), "keep": KeepIfBetter()}
    if name == "local":
        return None
    if name not in table:
        raise AutoorgError(f"unknown offline strategy '{name}': the heuristic backend's model is one of "
                           + ", ".join(STRATEGIES))
    return table[name]
