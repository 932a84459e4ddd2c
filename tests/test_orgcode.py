"""Org code: files resolve from the research repo's org/, the repo, the user's folder, then the bundled library;
the hash covers exactly what resolved and is stamped on new rows; versions are kept for `org diff`; `autoorg init`
scaffolds a research repo and refuses to overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from autoorg import experiments, orgcode
from autoorg.experiments import ledger
from autoorg.org import build_org, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.spec import load_org, load_task
from autoorg.testing import git, run_cli

BUNDLED_PROMPT = (orgcode.bundled_root() / "prompts" / "researcher.md").read_text()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_file_resolves_from_org_then_repo_then_user_then_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   ) -> None:
    repo, user = tmp_path / "research", tmp_path / "user"
    monkeypatch.setenv("AUTOORG_USER_DIR", str(user))
    repo.mkdir()
    assert orgcode.find_file(repo, "prompts/researcher.md").origin == "bundled"  # type: ignore[union-attr]
    write(user / "prompts" / "researcher.md", "user's")
    assert orgcode.find_file(repo, "prompts/researcher.md").origin == "user"  # type: ignore[union-attr]
    write(repo / "prompts" / "researcher.md", "repo's")
    write(repo / "org" / "prompts" / "researcher.md", "org's")
    found = orgcode.find_file(repo, "prompts/researcher.md")
    assert found is not None and found.path.read_text() == "org's" and found.origin == "repo"
    assert orgcode.find_file(repo, "prompts/nobody.md") is None
    # A skill resolves by name: the user's own skill joins the bundled ones, and overrides one of the same name.
    write(user / "skills" / "plot-results" / "SKILL.md", "plot")
    write(user / "skills" / "run-experiment" / "SKILL.md", "mine")
    skills = {p.name: p for p in orgcode.skill_dirs(repo)}
    assert {"plot-results", "run-experiment", "message-the-org"} <= set(skills)
    assert skills["run-experiment"].parent.parent == user
    code = orgcode.resolve(repo, ["prompts/researcher.md"])
    origins = {f.name: f.origin for f in code.files}
    assert origins["skills/run-experiment/SKILL.md"] == "user"
    assert origins["skills/message-the-org/SKILL.md"] == "bundled"


def test_the_hash_covers_exactly_the_resolved_files(tmp_path: Path) -> None:
    repo = tmp_path / "research"
    org_yaml = write(tmp_path / "org.yaml", "agents: [alice]\n")
    first = orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml)
    assert {f.name for f in first.files} >= {"prompts/researcher.md", "org.yaml", "skills/run-experiment/SKILL.md"}
    assert "prompts/chief.md" not in {f.name for f in first.files}  # no chief in this org: not its code
    assert orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml).hash == first.hash
    write(repo / "org" / "prompts" / "researcher.md", BUNDLED_PROMPT)  # same content, other origin: same version
    assert orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml).hash == first.hash
    write(repo / "org" / "prompts" / "researcher.md", BUNDLED_PROMPT + "Ablate every multi-part win.\n")
    assert orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml).hash != first.hash
    write(repo / "unrelated.md", "not org code")
    edited = orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml)
    assert orgcode.resolve(repo, ["prompts/researcher.md"], org_yaml).hash == edited.hash


@pytest.fixture
def headless_org(repo: Path, tmp_path: Path) -> OrgPaths:
    spec = {"tag": "oc", "task": "tiny", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": "alice", "slots": "cpu"}]}
    org_file = write(tmp_path / "oc.yaml", yaml.safe_dump(spec))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    build_org(plan)
    yield plan.paths
    teardown_org(plan.paths)


def queue_change(paths: OrgPaths, value: float) -> str:
    ctx = experiments.load_context(paths)
    train = ctx.worktree("alice") / "tiny" / "train.py"
    train.write_text(train.read_text().replace("X = ", f"X = {value}  # was ", 1))
    exp = experiments.queue_experiment(ctx, "alice", f"X = {value}")
    return str(ledger.get_experiment(paths, exp)["org_code"])


def test_rows_carry_the_version_and_org_diff_shows_an_edit(headless_org: OrgPaths, repo: Path) -> None:
    paths = headless_org
    shown = json.loads(run_cli("org", "show", "--json", cwd=repo).stdout)
    files = {f["name"]: f for f in shown["files"]}
    assert files["prompts/researcher.md"]["origin"] == "bundled"
    assert files["org.yaml"]["path"] == str(paths.org_yaml)
    assert shown["versions"] == [shown["hash"]]  # recorded when the org started
    before = queue_change(paths, 0.5)
    assert before == shown["hash"]

    write(repo / "org" / "prompts" / "researcher.md", BUNDLED_PROMPT + "Ablate every multi-part win.\n")
    text = run_cli("org", "show", cwd=repo).stdout
    line = next(line for line in text.splitlines() if "prompts/researcher.md" in line)
    assert line.split()[1] == "repo" and str(repo / "org" / "prompts" / "researcher.md") in line
    after = queue_change(paths, 0.25)
    assert after != before and after in text.splitlines()[0]
    assert orgcode.recorded(paths.orgcode) == [before, after]  # (the daemon's baseline rows carry one of them)

    (repo / "org" / "prompts" / "researcher.md").write_text("overwritten after the row")  # the kept copy holds
    diff = run_cli("org", "diff", before[:6], after, cwd=repo)
    assert diff.returncode == 0, diff.stderr
    assert f"+++ {after}/prompts/researcher.md" in diff.stdout
    assert "+Ablate every multi-part win." in diff.stdout and "overwritten" not in diff.stdout
    unknown = run_cli("org", "diff", before, "ffffff", cwd=repo)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "not a recorded version" in unknown.stderr


TRAIN = """\
import argparse, json
LEARNING_RATE = 0.01
DEPTH = 4
USE_BIAS = True
NAME = "not a knob"
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--budget", type=float, default=1)
args = p.parse_args()
loss = abs(LEARNING_RATE - 0.003) * 100 + abs(DEPTH - 6) * 0.1 + (args.seed % 7) * 1e-4
print("@metric " + json.dumps({"final": True, "val_loss": loss}), flush=True)
"""


def test_init_scaffolds_a_research_repo_and_refuses_to_overwrite(repo: Path) -> None:
    write(repo / "train.py", TRAIN)
    result = run_cli("init", "--budget", "20", "--backend", "heuristic", "--tag", "mine", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "What to edit" in result.stdout and "autoorg up org/org.yaml" in result.stdout
    assert len(result.stdout.splitlines()) <= 30  # one screen
    task = load_task(repo / "task.yaml")
    assert (task.name, task.editable, task.protected, task.metric, task.direction, task.budget) == (
        "mine", ["train.py"], ["task.yaml"], "val_loss", "minimize", {"cpu": 20.0, "gpu": 20.0})
    assert {k.name: k.type for k in task.knobs} == {"LEARNING_RATE": "float", "DEPTH": "int", "USE_BIAS": "bool"}
    spec = load_org(str(repo / "org" / "org.yaml"))
    assert spec.tag == "mine" and [a.backend for a in spec.agents] == ["heuristic", "heuristic"]
    assert (repo / "org" / "prompts" / "researcher.md").read_text() == BUNDLED_PROMPT
    assert (repo / "org" / "skills" / "run-experiment" / "SKILL.md").is_file()
    found = orgcode.find_file(repo, "prompts/chief.md")
    assert found is not None and found.path == repo / "org" / "prompts" / "chief.md"

    again = run_cli("init", cwd=repo)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "does not overwrite" in again.stderr
    shutil.rmtree(repo / "org")
    (repo / "task.yaml").unlink()
    missing = run_cli("init", "--train", "nope.py", cwd=repo)
    assert missing.returncode == 2 and "no training script" in missing.stderr
    assert not (repo / "task.yaml").exists() and not (repo / "org").exists()
    git(repo, "status")  # still a healthy repo
