"""Simulated orgs (bench/sim.py): the real ledger and gate statistics on a simulated clock, and a simulated bench."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoorg.bench.cell import cell_dir
from autoorg.bench.sim import SimOrg, SimSettings, load_evaluator
from autoorg.clock import parse_iso
from autoorg.errors import TaskError
from autoorg.experiments import ledger
from autoorg.gate.heads import GateSettings
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.testing import run_cli
from tests.exp_support import SYNTHETIC, add_synthetic

ROOT = SYNTHETIC.parents[1]
TASK = load_task(SYNTHETIC / "task.yaml")


def _org(tmp_path: Path, **settings: object) -> tuple[OrgPaths, SimOrg]:
    home = tmp_path / ".autoorg" / "sim"
    home.mkdir(parents=True)
    paths = OrgPaths(home)
    base = {"agents": 6, "experiments": 5, "slots": 6, "gate": GateSettings(8, 2.9, 0.0001, 4), "seed": 1}
    org = SimOrg(paths, TASK, SimSettings(**{**base, **settings}), source=ROOT,  # type: ignore[arg-type]
                 start=datetime(2026, 1, 1, tzinfo=UTC))
    return paths, org


def test_a_simulated_org_leaves_a_consistent_ledger_in_simulated_time(tmp_path: Path) -> None:
    paths, org = _org(tmp_path)
    with ledger.batch(paths):
        result = org.run()
    rows = ledger.experiments(paths)
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["exp"] == 6 * 5 and kinds["baseline"] >= 4 and result.runs == len(rows)
    assert all(r["verdict"] not in ledger.UNFINISHED and r["metric"] is not None for r in rows)
    for r in rows:  # every run took exactly its budget on the simulated clock, none before the start
        took = (parse_iso(r["finished"]) - parse_iso(r["started"])).total_seconds()
        assert took == pytest.approx(TASK.budget["cpu"]) and parse_iso(r["queued"]) <= parse_iso(r["started"])
    assert result.simulated_s < 600  # simulated, not slept: the test takes a second
    verifications = ledger.verifications(paths)
    promoted = [v for v in verifications if v["status"] == "promoted"]
    assert len(promoted) == len(ledger.promotions(paths)) == result.promotions
    for v in verifications:
        runs = [r for r in rows if r["candidate"] == v["exp"]]
        if v["status"] in ("promoted", "rejected"):
            assert len(runs) % 2 == 0 and len(runs) >= 2  # same-seed pairs, the first look at one pair
            seeds = Counter(r["seed"] for r in runs)
            assert set(seeds.values()) == {2}
    assert {r["verdict"] for r in rows if r["kind"] == "exp"} <= {
        "no gain", "same as head", "candidate", "promoted", "stale: already in the program head"} | {
        r["verdict"] for r in rows if r["verdict"].startswith("rejected")}
    assert ledger.baselines(paths)[0]["n"] == 4 and result.start == ledger.baselines(paths)[0]["mean"]


def test_the_same_seed_gives_the_same_simulation(tmp_path: Path) -> None:
    outcomes = []
    for i in range(2):
        paths, org = _org(tmp_path / str(i))
        with ledger.batch(paths):
            org.run()
        outcomes.append([(r["kind"], r["seed"], r["metric"], r["verdict"]) for r in ledger.experiments(paths)])
    assert outcomes[0] == outcomes[1]


def test_a_compute_limit_stops_the_agents_and_the_gate_starts_nothing_after(tmp_path: Path) -> None:
    paths, org = _org(tmp_path, experiments=None, compute_limit_s=120.0, strategies=["local", "random"])
    with ledger.batch(paths):
        org.run()
    rows = ledger.experiments(paths)
    exps = [r for r in rows if r["kind"] == "exp"]
    assert 120 / TASK.budget["cpu"] <= sum(TASK.budget["cpu"] for _ in rows) / TASK.budget["cpu"]
    assert len(exps) < 120 / TASK.budget["cpu"] + 6  # at most one more experiment per agent once it is spent
    assert {r["agent"] for r in exps} == {f"a{i:04d}" for i in range(6)}


def test_a_task_without_a_score_function_cannot_be_simulated(tmp_path: Path) -> None:
    task_dir = tmp_path / "t"
    task_dir.mkdir()
    (task_dir / "evaluate.py").write_text("print('no score here')\n")
    with pytest.raises(TaskError, match="no score"):
        load_evaluator(load_task(SYNTHETIC / "task.yaml").__class__(**{**vars(TASK), "path": task_dir / "task.yaml"}))


def test_a_simulated_bench_runs_in_seconds(repo: Path) -> None:
    add_synthetic(repo, budget=2)
    (repo / "sim.yaml").write_text("name: s\ntasks: [synthetic]\nrepeats: 2\nbudget: {slot_minutes: 4}\n"
                                   "simulate: true\nbackend: heuristic\nprocesses: {baseline: {repeats: 4}}\n"
                                   "baselines: [keep, random]\n"
                                   "orgs:\n  - {name: team, org: 8xcpu}\n")
    out = repo / "out"
    done = run_cli("bench", "sim.yaml", "--out", str(out), "--no-plots", cwd=repo, timeout=180)
    assert done.returncode == 0, done.stderr
    for org in ("team", "keep", "random"):
        for r in (1, 2):
            result = json.loads((cell_dir(out, org, "synthetic", r) / "result.json").read_text())
            assert result["simulated"] and result["figures"]["compute_h"] * 60 >= 4 - 1e-9
            assert result["agents"] == {"team": 8, "keep": 1, "random": 2}[org]  # a search: one agent per core
    doc = json.loads((out / "report.json").read_text())
    assert {o["org"] for o in doc["orgs"]} == {"team", "keep", "random"}
