"""Islands: agents in groups on their own branches, each with its own baselines, screening and promotions, and the
gate's migration of the best island's head to the worst island (and to org/<tag>), through the real runner,
ledger, git and gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autoorg import comms, experiments, gate, workspace
from autoorg.agents import LaunchContext, homes
from autoorg.errors import SpecError
from autoorg.experiments import ledger
from autoorg.org import load_org_target, teardown_org
from autoorg.paths import OrgPaths, org_paths
from autoorg.spec import load_org
from autoorg.testing import experiments as sup
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.experiments import drive_gate, set_knobs, settled, verdict
from tests.exp_support import add_synthetic

EAST, WEST = "org/isl.island.east", "org/isl.island.west"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The topology and its checks


def test_the_islands_topology_sizes_each_island_and_reads_back(tmp_path: Path) -> None:
    spec = load_org_target("islands:3", tmp_path)
    assert spec.islands == ["east", "west"] and spec.processes.migrate.every == 2
    assert [(a.name, a.island) for a in spec.agents] == [
        ("a1", "east"), ("a2", "east"), ("a3", "east"), ("b1", "west"), ("b2", "west"), ("b3", "west")]
    again = load_org(str(write(tmp_path / "org.yaml", spec.to_yaml())))
    assert again.to_dict() == spec.to_dict()
    assert "migrate" not in load_org_target("solo", tmp_path).to_dict()["processes"]
    # an LLM agent's prompt names its island's branch as its program branch
    launch = LaunchContext(paths=org_paths(tmp_path, spec.tag), spec=spec, worktree=tmp_path)
    assert "Your program branch is `org/islands-3.island.west`" in homes.role_prompt(spec.agent("b2"), launch)
    solo = load_org_target("solo", tmp_path)
    alone = LaunchContext(paths=org_paths(tmp_path, solo.tag), spec=solo, worktree=tmp_path)
    assert "Your program branch is `org/solo`" in homes.role_prompt(solo.agents[0], alone)


@pytest.mark.parametrize(("body", "says"), [
    ({"agents": [{"name": "a", "island": "x"}, {"name": "b"}]},
     "agent 'b' runs experiments but is on no island"),
    ({"agents": [{"name": "a", "island": "x"}, {"name": "b", "island": "x"}]}, "an island model needs at least two"),
    ({"agents": [{"name": "a"}], "processes": {"migrate": {"every": 2}}}, "no agent is on an island"),
    ({"agents": [{"name": "a", "island": "x"}, {"name": "b", "island": "y"}], "processes": {"migrate": {"every": 0}}},
     "processes.migrate.every must be a whole number >= 1"),
    ({"agents": [{"name": "a", "island": "Big Island"}]}, "island 'Big Island' is not a safe name"),
])
def test_bad_islands_are_refused_with_file_and_line(tmp_path: Path, body: dict[str, object], says: str) -> None:
    path = write(tmp_path / "org.yaml", yaml.safe_dump(body, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_org(str(path))
    assert says in str(err.value) and f"{path}:" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# The gate with islands


@pytest.fixture
def islands(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo, sigma=0.005)
    paths = sup.start_org(repo, tmux_socket, tmp_path, tag="isl", baseline=3, repeats=4, extra={
        "agents": [{"name": "alice", "slots": "cpu", "island": "east"},
                   {"name": "bob", "slots": "cpu", "island": "west"}],
        "processes": {"baseline": {"repeats": 3}, "gate": {"repeats": 4}, "migrate": {"every": 1}}})
    return paths


def run_exp(paths: OrgPaths, agent: str, message: str) -> str:
    ctx = experiments.load_context(paths)
    exp = experiments.queue_experiment(ctx, agent, message)
    gate.run_experiment(ctx, exp)
    return exp


def test_a_win_is_promoted_on_its_island_then_migrates_to_the_worst_island_and_the_org(islands: OrgPaths) -> None:
    paths, repo = islands, islands.repo
    base = git(repo, "rev-parse", "org/isl")
    assert git(repo, "rev-parse", EAST) == git(repo, "rev-parse", WEST) == base
    assert workspace.agent_branches(repo, "isl") == ["org/isl.alice", "org/isl.bob"]  # not the islands' branches
    ctx = experiments.load_context(paths)
    drive_gate(paths, lambda: gate.head_stats(ctx, base, "cpu").n >= 3, message="the shared start's baseline")

    set_knobs(paths.worktree("alice"), LEARNING_RATE=0.006)
    exp = run_exp(paths, "alice", "lr 0.006")
    row = ledger.get_experiment(paths, exp)
    assert row["head"] == base and row["ref_head"] == base
    drive_gate(paths, lambda: settled(paths, exp), timeout=120, message="the win to be decided")
    assert verdict(paths, exp) == "promoted"
    (promo,) = ledger.promotions(paths)
    east = git(repo, "rev-parse", EAST)
    assert promo["branch"] == EAST and promo["new_head"] == east != base
    assert ledger.verifications(paths, exp=exp)[-1]["branch"] == EAST
    news = retry_until(lambda: [m for m in comms.read_inbox(paths, "alice") if m.kind == "system" and m.exp == exp],
                       timeout=20, message="alice told of the promotion")
    assert f"git merge {EAST}" in news[0].body
    assert not [m for m in comms.read_inbox(paths, "bob") if m.exp == exp]  # only its island is told

    # migrate.every 1: once the new head has its K runs, the best island's head replaces the worst's, and org/isl
    # (the org's result) moves to it
    drive_gate(paths, lambda: len(ledger.island_migrations(paths)) >= 2, timeout=120, message="the migration")
    moves = ledger.island_migrations(paths)
    assert {(m["branch"], m["from_island"], m["to_island"]) for m in moves} == {(WEST, "east", "west"),
                                                                                  ("org/isl", "east", None)}
    assert all(m["old_head"] == base and m["new_head"] == east and m["from_mean"] < m["old_mean"] for m in moves)
    assert git(repo, "rev-parse", WEST) == git(repo, "rev-parse", "org/isl") == east
    retry_until(lambda: any("Migration" in m.body and WEST in m.body for m in comms.read_inbox(paths, "bob")),
                timeout=20, message="bob told of the migration")

    # the guard knows a migration for the gate's own move, and puts back anyone else's
    gate.step(paths, log=lambda _line: None)
    assert git(repo, "rev-parse", WEST) == east and not ledger.branch_reverts(paths)
    git(repo, "update-ref", f"refs/heads/{WEST}", base)
    drive_gate(paths, lambda: git(repo, "rev-parse", WEST) == east, message="the foreign move reverted")
    assert [(r["branch"], r["found"]) for r in ledger.branch_reverts(paths)] == [(WEST, base)]

    # bob's next run starts from and is judged against his island's new head
    git(paths.worktree("bob"), "merge", "-q", WEST)
    set_knobs(paths.worktree("bob"), WEIGHT_DECAY=0.01)
    later = run_exp(paths, "bob", "wd 0.01")
    assert ledger.get_experiment(paths, later)["head"] == east

    out = json.loads(run_cli("results", "--json", cwd=repo, env={"AUTOORG_HOME": str(paths.home)}).stdout)
    assert [(i["island"], i["head"]) for i in out["islands"]] == [("east", east), ("west", east)]
    assert len(out["migrations"]) == 2
    shown = run_cli("results", cwd=repo, env={"AUTOORG_HOME": str(paths.home)}).stdout
    assert "island east (alice)" in shown and f"on {EAST}" in shown and "migrated island east's head" in shown


# ---------------------------------------------------------------------------------------------------------------
# End to end: offline researchers on two islands


def test_offline_researchers_work_on_their_islands(repo: Path) -> None:
    add_synthetic(repo, budget=0.2)
    proc = run_cli("up", "islands:1", "--tag", "il", "--task", "synthetic", "--backend", "heuristic", "--headless",
                   cwd=repo)
    assert proc.returncode == 0, proc.stderr
    paths = org_paths(repo, "il")
    try:
        heads = {"a1": "org/il.island.east", "b1": "org/il.island.west"}

        def both_measured() -> bool:
            rows = ledger.experiments(paths, kinds=("exp",))
            return {r["agent"] for r in rows if r["verdict"] not in ledger.UNFINISHED} >= set(heads)

        retry_until(both_measured, timeout=120, interval=1, message="both islands' researchers measured")
        for r in ledger.experiments(paths, kinds=("exp",)):
            # each run started from a head its island's branch has held (its own history, or a migrant's)
            history = git(repo, "log", "--format=%H", heads[r["agent"]]).split()
            moves = {m["new_head"] for m in ledger.island_migrations(paths)}
            assert r["head"] in history or r["head"] in moves
        board = comms.read_board(paths)
        assert "island east: `org/il.island.east`" in board and "island west" in board
    finally:
        result = teardown_org(paths)
    assert not any("island" in b for b in (*result.deleted, *result.unmerged))
    assert workspace.branch_exists(repo, "org/il.island.east") and workspace.branch_exists(repo, "org/il.island.west")
