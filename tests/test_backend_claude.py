"""`backend: claude`: what `up` writes for Claude Code, and the root rule. The real CLI runs in test_e2e_agents."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from autoorg import workspace
from autoorg.agents import LaunchContext, get_backend, homes
from autoorg.agents.claude import HOOK_STATES
from autoorg.errors import BackendError
from autoorg.org import plan_org
from autoorg.testing import git, run_cli

ORG = """\
tag: cc
task: tiny
allow_skip_permissions: {allow}
agents:
  - {{name: alice, backend: claude, model: scripted-model}}
  - {{name: bob, backend: claude}}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own: the user's Claude config must never be written."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for var in ("CLAUDE_CONFIG_DIR", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "IS_SANDBOX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz")
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '9.9.9 (Claude Code)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("AUTOORG_CLAUDE_BIN", str(fake))  # prepare/command need a binary, not a running one
    return path


def contexts(repo: Path, allow: bool) -> list[tuple[LaunchContext, object]]:
    (repo / "org.yaml").write_text(ORG.format(allow="true" if allow else "false"))
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org")
    plan = plan_org(str(repo / "org.yaml"))
    out = []
    for agent in plan.agents:
        workspace.add_worktree(repo, agent.worktree, agent.branch, plan.base)
        out.append((LaunchContext(paths=plan.paths, spec=plan.spec, worktree=agent.worktree, env=agent.env),
                    agent.spec))
    return out


def test_prepare_answers_every_first_start_dialog_for_exactly_that_worktree(repo: Path, home: Path) -> None:
    backend = get_backend("claude")
    prepared = contexts(repo, allow=True)
    for ctx, agent in prepared:
        backend.prepare(agent, ctx)  # type: ignore[arg-type]
    configs = set()
    for ctx, agent in prepared:
        name = agent.name  # type: ignore[attr-defined]
        folder = homes.agent_home(ctx.paths, name)
        config = folder / "claude"
        configs.add(config)
        state = json.loads((config / ".claude.json").read_text())
        assert state["hasCompletedOnboarding"] is True
        assert state["customApiKeyResponses"]["approved"] == ["ghijklmnopqrstuvwxyz"]  # the key's last 20
        assert list(state["projects"]) == [str(ctx.worktree.resolve())]
        assert state["projects"][str(ctx.worktree.resolve())]["hasTrustDialogAccepted"] is True
        settings = json.loads((folder / "claude-settings.json").read_text())
        assert settings["skipDangerousModePermissionPrompt"] is True
        events = {event for event, _matcher, _state in HOOK_STATES}
        assert set(settings["hooks"]) == events
        assert "hook status working" in json.dumps(settings["hooks"]["UserPromptSubmit"])
        assert "hook status idle" in json.dumps(settings["hooks"]["Stop"])
        skills = {p.name for p in (config / "skills").iterdir() if (p / "SKILL.md").is_file()}
        assert skills >= {"run-experiment", "read-inbox-and-results", "message-the-org"}
        role = (folder / "role.md").read_text()
        assert f"You are {name}, a researcher" in role and "tiny/train.py" in role  # rendered from the task
        env_file = folder / "env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz" in env_file.read_text()
        assert workspace.dirty_paths(ctx.worktree) == []  # nothing of the agent's config in its worktree
    assert len(configs) == 2  # one config home per agent: concurrent starts share no file
    assert not (home / ".claude.json").exists() and not (home / ".claude").exists()


def test_command_runs_claude_interactive_with_model_settings_role_and_kickoff(repo: Path, home: Path) -> None:
    backend = get_backend("claude")
    (ctx, alice), (_, bob) = contexts(repo, allow=True)
    backend.prepare(alice, ctx)  # type: ignore[arg-type]
    line = backend.command(alice, ctx)  # type: ignore[arg-type]
    exec_part = shlex.split(line.split("exec ", 1)[1])
    assert "-p" not in exec_part and "--print" not in exec_part
    assert exec_part[exec_part.index("--model") + 1] == "scripted-model"
    assert "--dangerously-skip-permissions" in exec_part
    assert exec_part[-1].startswith("You are alice, researcher of the autoorg research org 'cc'. Start now")
    assert f"CLAUDE_CONFIG_DIR={homes.agent_home(ctx.paths, 'alice') / 'claude'}" in exec_part
    assert ("IS_SANDBOX=1" in exec_part) == (os.geteuid() == 0)
    assert "--model" not in shlex.split(backend.command(bob, ctx).split("exec ", 1)[1])  # type: ignore[arg-type]


def test_hooks_never_fail_and_never_print(repo: Path, home: Path, tmp_path: Path) -> None:
    """Claude Code adds a hook's stdout to the conversation and treats exit 2 as 'block': a hook that cannot
    write its status (an agent name the org cannot have) must stay silent and exit 0."""
    command = homes.hook_command("idle", log=tmp_path / "hooks.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOORG_")}
    proc = subprocess.run(["sh", "-c", command], input="{}", capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "AUTOORG_AGENT": "Not A Name", "AUTOORG_HOME": str(tmp_path / "org")},
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert "autoorg:" in (tmp_path / "hooks.log").read_text()  # the failure is kept for a person to read


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule is about running as root (CI runs as root)")
def test_as_root_without_the_orgs_allowance_up_fails_with_the_fix_and_leaves_nothing(repo: Path, home: Path,
                                                                                       tmux_socket: str) -> None:
    (repo / "org.yaml").write_text(ORG.format(allow="false"))
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org")
    proc = run_cli("up", "org.yaml", "--no-attach", "--socket", tmux_socket, cwd=repo)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "as root" in lines[0] and "allow_skip_permissions: true" in lines[0] and "non-root" in lines[0]
    assert not (repo / ".autoorg" / "cc" / "worktrees" / "alice").exists()
    assert "org/cc.alice" not in git(repo, "branch", "--list")
    dry = run_cli("up", "org.yaml", "--dry-run", "--socket", tmux_socket, cwd=repo)  # the plan says it too
    assert dry.returncode == 2 and "allow_skip_permissions: true" in dry.stderr
    assert not (repo / ".autoorg").exists()


def test_plan_and_prepare_as_root_without_allowance_refuse_before_writing(repo: Path, home: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule, whoever runs the tests (root is simulated through the check's input)."""
    (ctx, alice), _ = contexts(repo, allow=True)
    monkeypatch.setattr("autoorg.agents.claude.is_root", lambda: True)
    with pytest.raises(BackendError, match="allow_skip_permissions"):
        contexts(repo, allow=False)
    ctx.spec.allow_skip_permissions = False
    with pytest.raises(BackendError, match="allow_skip_permissions"):
        get_backend("claude").prepare(alice, ctx)  # type: ignore[arg-type]
    assert not homes.agent_home(ctx.paths, "alice").exists()


def test_available_needs_the_cli_and_credentials(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = get_backend("claude")
    assert backend.available()[0]
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    ok, why = backend.available()
    assert not ok and "ANTHROPIC_API_KEY" in why
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text("{}")
    ok, why = backend.available()
    assert ok and "claude login" in why
    monkeypatch.setenv("AUTOORG_CLAUDE_BIN", str(home / "missing"))
    ok, why = backend.available()
    assert not ok and "not found" in why
