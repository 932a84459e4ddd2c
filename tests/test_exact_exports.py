"""What a run or the gate sees is the committed tree byte for byte: filters, attributes and hooks planted in
the shared .git change nothing; a run that rewrites its copy of a protected file is void."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoorg import experiments, gate, workspace
from autoorg.experiments import ledger
from autoorg.experiments.manifest import read_manifest
from autoorg.paths import OrgPaths
from autoorg.testing import experiments as sup
from autoorg.testing import git
from autoorg.testing.experiments import TRAIN, set_knobs
from tests.exp_support import add_synthetic

LANDSCAPE = "examples/synthetic/landscape.py"


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo)
    return sup.start_org(repo, tmux_socket, tmp_path, agents=1)


def plant_filter_and_hooks(repo: Path, scratch: Path) -> Path:
    """A smudge filter doctoring the protected file, export attributes and a post-checkout hook, all in the
    shared .git; returns the file each of them writes when it runs."""
    ran = scratch / "ran"
    doctor = scratch / "doctor.py"
    doctor.write_text(f"import sys\nopen({str(ran)!r}, 'a').write('filter\\n')\n"
                      "sys.stdout.write(sys.stdin.read() + '\\nDOCTORED = True\\n')\n")
    (repo / ".git" / "info" / "attributes").write_text(
        f"{LANDSCAPE} filter=easy\n{TRAIN} export-subst\nexamples/synthetic/task.yaml export-ignore\n")
    git(repo, "config", "filter.easy.smudge", f"{sys.executable} {doctor}")
    git(repo, "config", "filter.easy.clean", "cat")
    git(repo, "config", "core.fsmonitor", f"echo fsmonitor >> {ran}; true")
    for hook in ("post-checkout", "pre-commit", "post-commit", "reference-transaction", "post-index-change"):
        path = repo / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\necho {hook} >> {ran}\nexit 0\n")
        path.chmod(0o755)
    return ran


def test_filters_attributes_and_hooks_change_nothing_a_run_or_the_gate_sees(org: OrgPaths, tmp_path: Path) -> None:
    ran = plant_filter_and_hooks(org.repo, tmp_path)
    worktree = org.worktree("alice")
    set_knobs(worktree, LEARNING_RATE=0.002)
    (worktree / TRAIN).write_text((worktree / TRAIN).read_text() + "# $Format:%H$\n")
    ctx = experiments.load_context(org)
    exp = experiments.queue_experiment(ctx, "alice", "lr 0.002")
    row = ledger.get_experiment(org, exp)

    out = tmp_path / "export"
    workspace.export_tree(org.repo, row["commit_sha"], out)
    for path in (LANDSCAPE, TRAIN, "examples/synthetic/task.yaml"):
        committed = git(org.repo, "cat-file", "blob", f"{row['commit_sha']}:{path}")
        assert (out / path).read_text().rstrip("\n") == committed
    assert "DOCTORED" not in (out / LANDSCAPE).read_text() and "$Format:%H$" in (out / TRAIN).read_text()

    squashed = workspace.squash_onto(org.repo, row["commit_sha"], row["head"], "squashed", author="alice")
    assert squashed and workspace.changed_paths(org.repo, row["head"], squashed) == [TRAIN]
    assert git(org.repo, "log", "-1", "--format=%an", squashed) == "alice"

    done = gate.run_experiment(ctx, exp)
    assert done["verdict"] in ("measured", "candidate", "no gain", "pending", "same as head")
    assert done["metric"] is not None
    assert "DOCTORED" not in (org.runs / exp / "log").read_text()
    assert not ran.exists(), ran.read_text()


def test_a_run_that_rewrites_its_protected_file_is_void(org: OrgPaths) -> None:
    manifest = read_manifest(org)
    assert manifest is not None and set(manifest.files) == {LANDSCAPE, "examples/synthetic/task.yaml",
                                                            "examples/synthetic/evaluate.py"}
    worktree = org.worktree("alice")
    train = worktree / TRAIN
    train.write_text(train.read_text().replace(
        "sys.path.insert(0, str(Path(__file__).parent))\n",
        "sys.path.insert(0, str(Path(__file__).parent))\n"
        "_land = Path(__file__).with_name('landscape.py')\n"
        "_land.write_text(_land.read_text().replace('    loss = 1.0\\n', '    loss = 0.5\\n', 1))\n", 1))
    ctx = experiments.load_context(org)
    exp = experiments.queue_experiment(ctx, "alice", "an easier landscape")
    row = gate.run_experiment(ctx, exp)
    assert row["verdict"] == f"void: rewrote protected file {LANDSCAPE}"
    assert row["metric"] is None
    assert "void: rewrote protected file" in gate.answer(ctx, row)


@pytest.mark.parametrize("where", ["info/attributes", ".gitattributes"])
def test_a_merge_driver_an_agent_defines_never_runs_in_the_gates_squash(tmp_path: Path, where: str) -> None:
    """`merge=<driver>` on a path (in the shared .git's info/attributes, or committed in .gitattributes) plus
    `merge.<driver>.driver` in the shared config would run a command inside `git merge-tree`: the gate's squash
    merges in an isolated git, with git's own text merge."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@localhost")
    (repo / "f.txt").write_text("a\nb\nc\nd\ne\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    ran = tmp_path / "driver-ran"
    git(repo, "config", "merge.evil.driver", f"touch {ran}; cp %B %A; true")
    if where == "info/attributes":
        (repo / ".git" / "info" / "attributes").write_text("f.txt merge=evil\n")
    else:
        (repo / ".gitattributes").write_text("* merge=evil\n")
        git(repo, "add", ".gitattributes")
        git(repo, "commit", "-qm", "attributes")
    git(repo, "checkout", "-qb", "agent")
    (repo / "f.txt").write_text("a\nb\nc\nd\nE\n")
    git(repo, "commit", "-qam", "agent's change")
    candidate = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    (repo / "f.txt").write_text("A\nb\nc\nd\ne\n")
    git(repo, "commit", "-qam", "the head moved on")
    head = git(repo, "rev-parse", "HEAD")

    squashed = workspace.squash_onto(repo, candidate, head, "squashed", author="alice")

    assert squashed is not None and not ran.exists()
    assert git(repo, "show", f"{squashed}:f.txt") == "A\nb\nc\nd\nE"  # both changes: git's text merge
    # the same git in the repository itself does run it: the planted driver is real
    git(repo, "merge-tree", "--write-tree", head, candidate)
    assert ran.exists()
