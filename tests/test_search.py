"""The offline researcher's strategies (`model:` of `backend: heuristic`): random, Optuna's TPE, autoresearch's
keep-if-better; each proposes valid, untried configurations, and runs real experiments in an org."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autoorg.agents import researcher, search
from autoorg.agents.knobs import config_key, read_knobs
from autoorg.experiments import ledger
from autoorg.spec import load_task
from autoorg.testing import run_cli
from autoorg.testing.experiments import start_org
from tests.exp_support import SYNTHETIC, add_synthetic

TASK = load_task(SYNTHETIC / "task.yaml")
KNOBS = TASK.knobs
HEAD = read_knobs((SYNTHETIC / "train.py").read_text(), KNOBS)


def _valid(values: dict[str, object]) -> bool:
    for k in KNOBS:
        v = values[k.name]
        if k.type == "choice":
            if v not in k.choices:
                return False
        elif not (k.low is not None and k.high is not None and k.low <= float(v) <= k.high):  # type: ignore[arg-type]
            return False
    return True


@pytest.mark.parametrize("name", ["random", "tpe", "keep"])
def test_each_strategy_proposes_valid_untried_configurations(name: str) -> None:
    strategy = search.strategy(name)
    assert strategy is not None
    rng = random.Random(7)
    seen: list[search.Observation] = [search.Observation(values=HEAD, mean=3.0, mine=True, best_single=3.0)]
    tried = {config_key(KNOBS, HEAD)}
    for i in range(12):
        proposal, why = strategy.propose(KNOBS, HEAD, seen, lambda c: config_key(KNOBS, c) in tried,
                                         TASK.better, rng)
        assert _valid(proposal) and config_key(KNOBS, proposal) not in tried and "→" in why
        tried.add(config_key(KNOBS, proposal))
        seen.append(search.Observation(values=proposal, mean=3.0 - 0.01 * i, mine=True, best_single=3.0 - 0.01 * i))


def test_keep_if_better_steps_from_its_own_best_single_run_not_the_head() -> None:
    mine = {**HEAD, "DEPTH": 9}
    others = {**HEAD, "DEPTH": 3}
    seen = [search.Observation(values=mine, mean=2.9, mine=True, best_single=2.8),
            search.Observation(values=others, mean=2.0, mine=False, best_single=2.0)]
    keep = search.KeepIfBetter()
    for seed in range(10):
        proposal, why = keep.propose(KNOBS, HEAD, seen, lambda c: False, TASK.better, random.Random(seed))
        moved = [k.name for k in KNOBS if proposal[k.name] != mine[k.name]]
        assert len(moved) == 1 and "my best run (2.8)" in why
        assert moved == ["DEPTH"] or proposal["DEPTH"] == 9  # one knob from *my* best, never from the other's


def test_tpe_concentrates_on_the_better_region() -> None:
    """Told that small learning rates are bad and large ones good, TPE's proposals lean to the good side."""
    lr = next(k for k in KNOBS if k.name == "LEARNING_RATE")
    rng = random.Random(3)
    seen = []
    for i in range(30):
        value = lr.low * (lr.high / lr.low) ** (i / 29)  # type: ignore[operator]
        seen.append(search.Observation(values={**HEAD, "LEARNING_RATE": value}, mean=10.0 - i / 3))
    tpe = search.TPESearch()
    draws = [tpe.propose([lr], HEAD, seen, lambda c: False, TASK.better, rng)[0]["LEARNING_RATE"] for _ in range(8)]
    middle = (lr.low * lr.high) ** 0.5  # type: ignore[operator]
    assert sum(d > middle for d in draws) >= 6, draws


def test_an_unknown_strategy_is_refused_at_up(repo: Path, tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    org = tmp_path / "o.yaml"
    org.write_text("tag: s\ntask: synthetic\nagents:\n  - {name: ann, backend: heuristic, model: tpee, slots: cpu}\n")
    out = run_cli("up", str(org), "--dry-run", cwd=repo)
    assert out.returncode == 2 and "one of local, random, tpe, keep; not 'tpee'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_tpe_researcher_runs_experiments_in_an_org(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    said: list[str] = []
    bot = researcher.Researcher(paths, "alice", say=said.append, seed=5, strategy="tpe")
    assert bot.run(max_experiments=3) == 3
    rows = ledger.experiments(paths, agent="alice", kinds=("exp",))
    assert len(rows) == 3 and all(r["metric"] is not None for r in rows)
    assert sum("TPE over" in line for line in said) == 3
