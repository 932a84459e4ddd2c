"""Only the gate moves the program branch: `exp run` refuses any branch but the agent's own, and a foreign move
of `org/<tag>` is reverted at the next gate step, recorded and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoorg import comms, experiments, gate
from autoorg.errors import RunnerError
from autoorg.experiments import ledger
from autoorg.gate.guard import gate_head
from autoorg.paths import OrgPaths
from autoorg.testing import experiments as sup
from autoorg.testing import git, run_cli
from autoorg.testing.experiments import TRAIN, drive_gate, set_knobs
from tests.exp_support import add_synthetic


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo)
    return sup.start_org(repo, tmux_socket, tmp_path, agents=2)


def head(paths: OrgPaths) -> str:
    return git(paths.repo, "rev-parse", "org/t")


def test_exp_run_on_the_program_branch_is_refused_and_commits_nothing(org: OrgPaths) -> None:
    worktree = org.worktree("alice")
    before = head(org)
    git(worktree, "checkout", "-q", "org/t")
    set_knobs(worktree, LEARNING_RATE=0.05)
    ctx = experiments.load_context(org)
    with pytest.raises(RunnerError, match=r"on branch org/t, not its own branch org/t\.alice.*"
                                          r"`git switch org/t\.alice`.*nothing was committed"):
        experiments.queue_experiment(ctx, "alice", "worse lr")
    assert head(org) == before
    assert git(worktree, "status", "--porcelain").strip() == f"M {TRAIN}"  # still uncommitted
    assert ledger.experiments(org) == []

    git(worktree, "checkout", "-q", "--detach")
    out = run_cli("exp", "run", "-m", "worse lr", cwd=worktree, env={"AUTOORG_HOME": str(org.home),
                                                                     "AUTOORG_AGENT": "alice"})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "on a detached HEAD" in out.stderr and "git switch org/t.alice" in out.stderr
    assert head(org) == before


def test_a_foreign_move_of_the_program_branch_is_reverted_at_the_next_gate_step(org: OrgPaths) -> None:
    base = head(org)
    worktree = org.worktree("bob")
    set_knobs(worktree, LEARNING_RATE=0.05)
    git(worktree, "commit", "-qam", "sneaked in")
    sneaked = git(worktree, "rev-parse", "HEAD")
    git(org.repo, "update-ref", "refs/heads/org/t", sneaked)  # as a run that found the repository would

    drive_gate(org, lambda: ledger.branch_reverts(org), message="the move to be reverted")  # the daemon may be first

    assert head(org) == base
    (revert,) = ledger.branch_reverts(org)
    assert (revert["branch"], revert["found"], revert["restored"]) == ("org/t", sneaked, base)
    assert f"org/t had moved to {sneaked[:10]} without the gate" in comms.read_board(org)
    (told,) = [m for m in comms.read_inbox(org, "human") if "without the gate" in m.body]
    assert told.sender == "gate" and f"put back at {base[:10]}" in told.body
    gate.step(org, log=lambda _line: None)
    assert len(ledger.branch_reverts(org)) == 1  # nothing more to revert


def test_a_promotion_is_the_gates_own_move_and_is_kept(org: OrgPaths) -> None:
    ctx = experiments.load_context(org)
    start = head(org)
    ledger.add_promotion(org, exp="e0001", agent="alice", old_head=start, new_head=start, metric=1.0,
                         head_mean=1.0, delta=0.0, band=0.1, description="x")
    worktree = org.worktree("alice")
    set_knobs(worktree, LEARNING_RATE=0.002)
    git(worktree, "commit", "-qam", "promoted one")
    promoted = git(worktree, "rev-parse", "HEAD")
    assert gate_head(ctx) == start
    ledger.add_promotion(org, exp="e0002", agent="alice", old_head=start, new_head=promoted, metric=1.0,
                         head_mean=1.0, delta=0.0, band=0.1, description="y")
    git(org.repo, "update-ref", "refs/heads/org/t", promoted, start)
    gate.step(org, log=lambda _line: None)
    assert head(org) == promoted and ledger.branch_reverts(org) == []


def promoting(org: OrgPaths, start: str) -> tuple[str, str]:
    """A verification whose promotion was decided and recorded (`promoting`), as the gate leaves it when it dies
    before moving the branch or before recording the promotion: (its candidate, the commit it promotes)."""
    ctx = experiments.load_context(org)
    worktree = org.worktree("alice")
    set_knobs(worktree, LEARNING_RATE=0.002)
    exp = experiments.queue_experiment(ctx, "alice", "lr 0.002")  # never run: only its row is read
    target = git(worktree, "rev-parse", "HEAD")
    ledger.add_verification(org, exp=exp, head=start, commit_sha=target, runs=[], status="promoting",
                            why="decided", mean=0.9, head_mean=1.0, band=0.01, sigma=0.01)
    return exp, target


def test_a_gate_that_died_after_moving_the_branch_keeps_its_promotion(org: OrgPaths) -> None:
    start = head(org)
    exp, target = promoting(org, start)
    git(org.repo, "update-ref", "refs/heads/org/t", target, start)  # the move, then the gate dies

    drive_gate(org, lambda: ledger.promotions(org), message="the promotion to be recorded")

    assert head(org) == target and ledger.branch_reverts(org) == []
    (promo,) = ledger.promotions(org)
    assert (promo["exp"], promo["old_head"], promo["new_head"]) == (exp, start, target)
    assert [v["status"] for v in ledger.verifications(org, exp=exp)] == ["promoted"]
    assert ledger.get_experiment(org, exp)["verdict"] == "promoted"
    assert gate_head(experiments.load_context(org)) == target


def test_a_gate_that_died_before_moving_the_branch_finishes_the_promotion(org: OrgPaths) -> None:
    start = head(org)
    exp, target = promoting(org, start)

    drive_gate(org, lambda: ledger.promotions(org), message="the promotion to be finished")

    assert head(org) == target and ledger.branch_reverts(org) == []
    assert [v["status"] for v in ledger.verifications(org, exp=exp)] == ["promoted"]


def test_a_recorded_intent_covers_only_its_own_target(org: OrgPaths) -> None:
    start = head(org)
    _, target = promoting(org, start)
    worktree = org.worktree("bob")
    set_knobs(worktree, LEARNING_RATE=0.05)
    git(worktree, "commit", "-qam", "sneaked in")
    sneaked = git(worktree, "rev-parse", "HEAD")
    git(org.repo, "update-ref", "refs/heads/org/t", sneaked, start)

    drive_gate(org, lambda: ledger.promotions(org), message="the revert and the promotion")

    (revert,) = ledger.branch_reverts(org)
    assert (revert["found"], revert["restored"]) == (sneaked, start)
    assert head(org) == target  # then the intent was carried out from where the gate left the branch
