"""Topologies as data: each `topologies/<name>.yaml` of the org-code library is an org `autoorg up NAME[:N]` starts,
resolved from the research repo first and covered by the org-code hash; each runs end to end with offline agents
on the synthetic task, its roles doing their job (ideas queued, claimed and closed with results; a chief that runs
nothing; agents that share only the ledger; a critic whose refusal keeps a candidate from verification)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autoorg import comms, experiments, gate, orgcode
from autoorg.agents import researcher
from autoorg.agents.offline import Critic
from autoorg.agents.researcher import Researcher
from autoorg.errors import SpecError
from autoorg.experiments import ledger, resolve_org_code
from autoorg.org import build_org, load_org_target, plan_org, teardown_org
from autoorg.paths import OrgPaths, org_paths
from autoorg.spec import load_org, load_task
from autoorg.testing import retry_until, run_cli
from autoorg.testing.experiments import drive_gate, set_knobs, verdict
from tests.exp_support import SYNTHETIC, add_synthetic

LIBRARY = ("solo", "independent", "chief", "queue", "review", "islands")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Loading


def test_every_topology_loads_sizes_and_is_named_by_up(repo: Path, tmp_path: Path) -> None:
    for name in LIBRARY:
        spec = load_org_target(name, tmp_path)
        assert spec.topology == name and spec.tag == name
        assert all(a.slots == ["cpu"] for a in spec.agents if a.role not in ("chief", "critic"))
    roles = {name: [a.role for a in load_org_target(name, tmp_path).agents] for name in LIBRARY}
    assert roles == {"solo": ["researcher"], "independent": ["researcher"] * 4, "chief": ["chief"] + ["worker"] * 4,
                     "queue": ["worker"] * 4, "review": ["critic"] + ["researcher"] * 4,
                     "islands": ["researcher"] * 4}
    queue8 = load_org_target("queue:8", tmp_path)
    assert (queue8.tag, queue8.names) == ("queue-8", [f"w{i}" for i in range(1, 9)])
    review = load_org_target("review:2", tmp_path)
    assert review.processes.review.role == "critic" and review.names == ["critic", "r1", "r2"]
    assert not load_org_target("independent", tmp_path).processes.comms.shared
    again = load_org(str(write(tmp_path / "org.yaml", review.to_yaml())))  # the resolved org.yaml reads back
    assert again.to_dict() == review.to_dict()

    help_text = run_cli("up", "--help", cwd=repo).stdout
    assert all(name in help_text for name in LIBRARY)
    typo = run_cli("up", "queu:3", "--dry-run", cwd=repo)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1
    assert "did you mean 'queue'?" in typo.stderr and "independent" in typo.stderr
    unsized = run_cli("up", "solo:3", "--dry-run", cwd=repo)
    assert unsized.returncode == 2 and "no team" in unsized.stderr and unsized.stderr.count("\n") == 1


def test_auto_slots_take_the_gpus_found_else_cpu(tmp_path: Path) -> None:
    path = orgcode.find_file(tmp_path, "topologies/queue.yaml")
    assert path is not None and path.origin == "bundled"
    spec = load_org(str(path.path), size=3, gpus=lambda: 2, topology="queue")
    assert [a.slots for a in spec.agents] == [["0"], ["1"], ["cpu"]]


def test_the_review_process_is_validated_with_file_and_line(tmp_path: Path) -> None:
    org = write(tmp_path / "bad.yaml", "agents:\n  - {name: critic, role: critic}\n  - alice\n"
                                       "processes:\n  review: {role: critc}\n")
    with pytest.raises(SpecError) as caught:
        load_org(str(org))
    assert f"{org}:5" in str(caught.value) and "did you mean 'critic'?" in str(caught.value)
    org.write_text("agents: [alice]\nprocesses:\n  comms: {shared: nope}\n")
    with pytest.raises(SpecError, match=r"bad.yaml:3.*true or false"):
        load_org(str(org))


def test_a_topology_resolves_from_the_repo_first_and_the_hash_covers_it(repo: Path) -> None:
    bundled = load_org_target("queue", repo)
    yaml_path = repo / "org.yaml"
    write(yaml_path, bundled.to_yaml())
    before = resolve_org_code(repo, bundled, yaml_path)
    names = {f.name: f.origin for f in before.files}
    assert names["topologies/queue.yaml"] == "bundled" and "prompts/worker.md" in names
    mine = (orgcode.bundled_root() / "topologies" / "queue.yaml").read_text().replace("count: 4", "count: 2")
    write(repo / "org" / "topologies" / "queue.yaml", mine)
    ours = load_org_target("queue", repo)
    assert ours.names == ["w1", "w2"]
    after = resolve_org_code(repo, ours, yaml_path)
    assert {f.name: f.origin for f in after.files}["topologies/queue.yaml"] == "repo"
    assert after.hash != before.hash
    write(repo / "topologies" / "mine.yaml", "agents: [{name: solo1, role: critic}, alice]\n"
                                             "processes: {review: {role: critic}}\n")
    assert "mine" in orgcode.topology_names(repo)
    assert load_org_target("mine", repo).processes.review.role == "critic"


def test_ideas_are_deduplicated_by_knob_and_value_or_by_similar_text() -> None:
    knobs = load_task(SYNTHETIC / "task.yaml").knobs
    assert researcher.parse_assignments("set LEARNING_RATE=0.003, depth=6, COLOR=red", knobs) == {
        "LEARNING_RATE": 0.003, "DEPTH": 6}
    assert researcher.same_idea("set DEPTH=6, LEARNING_RATE=0.003", "LEARNING_RATE = 0.003; DEPTH=6", knobs)
    assert not researcher.same_idea("set DEPTH=6", "set DEPTH=7", knobs)
    assert researcher.same_idea("Try a cosine schedule.", "try a  cosine schedule", knobs)
    assert not researcher.same_idea("try a cosine schedule", "try label smoothing", knobs)


# ---------------------------------------------------------------------------------------------------------------
# End to end: headless orgs of offline agents


@pytest.fixture
def synthetic_repo(repo: Path) -> Path:
    add_synthetic(repo, budget=0.2)
    return repo


@pytest.fixture
def up_topology(synthetic_repo: Path) -> Iterator[object]:
    started: list[str] = []

    def up(target: str, tag: str) -> OrgPaths:
        proc = run_cli("up", target, "--tag", tag, "--task", "synthetic", "--backend", "heuristic", "--headless",
                       cwd=synthetic_repo)
        assert proc.returncode == 0, proc.stderr
        started.append(tag)
        return org_paths(synthetic_repo, tag)

    yield up
    for tag in started:
        run_cli("down", "--tag", tag, cwd=synthetic_repo, timeout=120)


def agent_log(paths: OrgPaths, agent: str) -> str:
    path = paths.home / "runtime" / f"{agent}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_queue_workers_share_one_queue_and_post_results_back(up_topology: object) -> None:
    paths = up_topology("queue:2", "q")  # type: ignore[operator]

    def closed_with_results() -> list[comms.Idea]:
        done = [i for i in comms.list_ideas(paths, "done") if "→" in (i.note or "")]
        return done if len(done) >= 2 else []

    done = retry_until(closed_with_results, timeout=120, interval=1, message="two ideas run and closed")
    assert {i.claimed_by for i in done} <= {"w1", "w2"} and all(i.note and i.note.startswith("e") for i in done)
    every = [i for s in comms.IDEA_STATES for i in comms.list_ideas(paths, s)]
    ran = [i for i in every if i.state == "done" and "→" in (i.note or "")]
    # no idea is queued twice (workers topping the queue up at the same moment check and add under one lock), so
    # none is run twice
    assert len({i.title for i in every}) == len(every) and len({i.title for i in ran}) == len(ran)
    rows = ledger.experiments(paths, kinds=("exp",))
    assert any(i.note and i.note.split()[0] in {r["exp"] for r in rows} for i in done)
    assert "queued idea" in agent_log(paths, "w1") + agent_log(paths, "w2")


def test_a_chief_queues_ideas_and_directs_juniors_and_runs_nothing(up_topology: object) -> None:
    paths = up_topology("chief:2", "c")  # type: ignore[operator]

    def chief_idea_run() -> list[comms.Idea]:
        return [i for i in comms.list_ideas(paths, "done") if i.author == "chief" and "→" in (i.note or "")]

    done = retry_until(chief_idea_run, timeout=120, interval=1, message="a chief's idea run by a junior")
    assert done[0].claimed_by in ("r1", "r2")
    assert not ledger.experiments(paths, agent="chief", kinds=("exp",))
    retry_until(lambda: "directive from chief: explore" in agent_log(paths, "r1"), timeout=60,
                message="r1 read the chief's directive")
    assert "queued idea" in agent_log(paths, "chief")


def test_independent_agents_share_only_the_ledger_and_solo_runs_alone(up_topology: object,
                                                                      synthetic_repo: Path) -> None:
    paths = up_topology("independent:2", "ind")  # type: ignore[operator]
    retry_until(lambda: {r["agent"] for r in ledger.experiments(paths, kinds=("exp",))
                         if r["verdict"] not in ledger.UNFINISHED} >= {"r1", "r2"},
                timeout=120, interval=1, message="both researchers measured")
    assert not [p for p in comms.board_posts(comms.read_board(paths), 1000) if p.author in ("r1", "r2")]
    assert not [i for s in comms.IDEA_STATES for i in comms.list_ideas(paths, s)]
    told = run_cli("msg", "send", "r2", "try a deeper model", "--tag", "ind", cwd=synthetic_repo,
                   env={"AUTOORG_AGENT": "r1"})
    assert told.returncode == 2 and told.stderr.count("\n") == 1 and "independently" in told.stderr
    assert run_cli("msg", "send", "r2", "a person may", "--tag", "ind", cwd=synthetic_repo).returncode == 0

    solo = up_topology("solo", "solo")  # type: ignore[operator]
    assert [a.name for a in experiments.load_context(solo).spec.agents] == ["alice"]
    retry_until(lambda: len(ledger.experiments(solo, agent="alice", kinds=("exp",))) >= 2, timeout=120,
                interval=1, message="solo's researcher runs experiments")


# ---------------------------------------------------------------------------------------------------------------
# Review: the gate verifies only what the critic approved


# Runs of the program head before alice's change is screened. With 2 (σ on 1 dof) a 6σ win (`LEARNING_RATE = 0.006`
# alone) fell inside the screening band 1.9% of the times and an 8.6σ one 0.1% (a clean-clone CI run met the second);
# with 4, 0.003% and none in 200,000 simulated draws.
REVIEW_BASELINES = 4


def review_org(repo: Path, tmp_path: Path, critic: dict[str, str]) -> OrgPaths:
    spec = {"tag": "rv", "task": "synthetic", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": "critic", "role": "critic", **critic}, {"name": "alice", "slots": "cpu"}],
            "processes": {"baseline": {"repeats": REVIEW_BASELINES}, "gate": {"repeats": 2},
                          "review": {"role": "critic"}}}
    plan = plan_org(str(write(tmp_path / "rv.yaml", yaml.safe_dump(spec))), repo=repo, runtime="headless")
    build_org(plan)
    return plan.paths


def candidate(paths: OrgPaths, description: str, **knobs: object) -> str:
    """Run a change of alice's to the end of screening and return it once it is a candidate."""
    ctx = experiments.load_context(paths)
    drive_gate(paths, lambda: gate.head_stats(ctx, ctx.program_head(), "cpu").n >= REVIEW_BASELINES, timeout=90,
               message="the baseline")
    set_knobs(ctx.worktree("alice"), **knobs)
    exp = experiments.queue_experiment(ctx, "alice", description)
    gate.run_experiment(ctx, exp, say=lambda _line: None)
    assert verdict(paths, exp) == "candidate", ledger.get_experiment(paths, exp)
    return exp


@pytest.fixture
def reviewed(synthetic_repo: Path, tmp_path: Path) -> Iterator[OrgPaths]:
    paths = review_org(synthetic_repo, tmp_path, {})
    yield paths
    teardown_org(paths)


def test_the_critic_refuses_a_two_knob_change_and_approves_one_change(reviewed: OrgPaths) -> None:
    paths = reviewed
    both = candidate(paths, "lr and warmup", LEARNING_RATE=0.006, WARMUP_FRAC=0.05)
    for _ in range(3):  # a candidate nobody approved is never verified
        gate.step(paths, log=lambda _line: None)
    assert not ledger.verifications(paths, exp=both)

    critic = Critic(Researcher(paths, "critic", say=lambda _line: None, seed=1))
    critic.round()
    refusal = ledger.reviews(paths, exp=both)
    assert [(r["reviewer"], r["decision"]) for r in refusal] == [("critic", "refuse")]
    assert "2 knobs at once" in refusal[0]["reason"] and "ablate: LEARNING_RATE=0.006 alone" in refusal[0]["reason"]
    assert verdict(paths, both).startswith("refused: changes 2 knobs")
    told = [m for m in comms.read_inbox(paths, "alice") if m.exp == both]
    assert told and "refused by critic" in told[0].body

    # alice (offline) takes the request: the ablation she runs next is one knob, which the critic approves
    alice = Researcher(paths, "alice", say=lambda _line: None, seed=2)
    alice.read_inbox()
    assert alice.todo == [{"LEARNING_RATE": 0.006}, {"WARMUP_FRAC": 0.05}]
    ctx = experiments.load_context(paths)
    set_knobs(ctx.worktree("alice"), WARMUP_FRAC=0.3)
    one = candidate(paths, "lr alone", LEARNING_RATE=0.006)
    critic.round()
    assert [r["decision"] for r in ledger.reviews(paths, exp=one)] == ["approve"]
    drive_gate(paths, lambda: ledger.verifications(paths, exp=one), timeout=30, message="verification starts")
    assert not ledger.verifications(paths, exp=both)
    listed = json.loads(run_cli("review", "list", "--json", "--tag", "rv", cwd=paths.repo).stdout)
    assert [r["decision"] for r in listed["reviews"]] == ["refuse", "approve"] and listed["role"] == "critic"
    again = run_cli("review", "refuse", both, "still two", "--tag", "rv", cwd=paths.repo)
    assert again.returncode == 2 and "not a candidate" in again.stderr and again.stderr.count("\n") == 1


CRITIC_SCRIPT = """\
import json, subprocess, sys, time
autoorg = [sys.executable, "-m", "autoorg"]
for _ in range(600):
    listed = json.loads(subprocess.run([*autoorg, "review", "list", "--json"], capture_output=True, text=True).stdout)
    for cand in listed["awaiting"]:
        subprocess.run([*autoorg, "review", "refuse", cand["exp"], "no ablation: run each change alone"])
    time.sleep(0.5)
"""


def test_a_command_backend_critic_refuses_through_the_cli(synthetic_repo: Path, tmp_path: Path) -> None:
    script = write(tmp_path / "critic.py", CRITIC_SCRIPT)
    paths = review_org(synthetic_repo, tmp_path,
                       {"backend": "command", "command": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"})
    try:
        exp = candidate(paths, "lr and warmup", LEARNING_RATE=0.006, WARMUP_FRAC=0.05)
        retry_until(lambda: ledger.reviews(paths, exp=exp), timeout=60, message="the stand-in critic's review")
        review = ledger.reviews(paths, exp=exp)[0]
        assert (review["reviewer"], review["decision"], review["reason"]) == (
            "critic", "refuse", "no ablation: run each change alone")
        assert verdict(paths, exp) == "refused: no ablation: run each change alone"
        gate.step(paths, log=lambda _line: None)
        assert not ledger.verifications(paths, exp=exp)
    finally:
        teardown_org(paths)
