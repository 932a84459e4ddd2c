"""`backend: codex`: the per-agent CODEX_HOME that `up` writes. The real CLI runs in test_e2e_agents."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path

import pytest

from autoorg import orgcode, workspace
from autoorg.agents import LaunchContext, get_backend, homes
from autoorg.agents.codex import to_toml
from autoorg.errors import BackendError
from autoorg.org import plan_org
from autoorg.spec import AgentSpec
from autoorg.testing import git, run_cli

CLI_PREFIX = orgcode.source_root() / ".npm-prefix" / "bin"
ORG = """\
tag: cx
task: tiny
agents:
  - {name: carol, backend: codex, model: scripted-model}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    for var in ("CODEX_HOME", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return path


def context(repo: Path) -> tuple[LaunchContext, AgentSpec]:
    (repo / "org.yaml").write_text(ORG)
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org")
    plan = plan_org(str(repo / "org.yaml"))
    agent = plan.agents[0]
    workspace.add_worktree(repo, agent.worktree, agent.branch, plan.base)
    return LaunchContext(paths=plan.paths, spec=plan.spec, worktree=agent.worktree, env=agent.env), agent.spec


def fake_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "codex"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\necho 'codex-cli 9.9.9'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("AUTOORG_CODEX_BIN", str(fake))


def test_prepare_trusts_the_worktree_points_at_the_endpoint_and_keeps_the_worktree_clean(
        repo: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_codex(tmp_path, monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    ctx, carol = context(repo)
    backend = get_backend("codex")
    backend.prepare(carol, ctx)
    codex_home = homes.agent_home(ctx.paths, "carol") / "codex"
    config = tomllib.loads((codex_home / "config.toml").read_text())
    assert config["model"] == "scripted-model"
    assert config["projects"][str(ctx.worktree.resolve())] == {"trust_level": "trusted"}
    assert config["model_provider"] == "autoorg"
    assert config["model_providers"]["autoorg"]["base_url"] == "http://127.0.0.1:9/v1"
    assert config["model_providers"]["autoorg"]["env_key"] == "OPENAI_API_KEY"
    assert config["allow_login_shell"] is False and config["check_for_update_on_startup"] is False
    assert config["features"]["daemon_auto_start"] is False
    hooks = json.loads((codex_home / "hooks.json").read_text())["hooks"]
    assert "hook status working" in json.dumps(hooks["UserPromptSubmit"])
    assert "hook status idle" in json.dumps(hooks["Stop"])
    assert "You are carol, a researcher" in (codex_home / "AGENTS.md").read_text()
    assert (codex_home / "skills" / "run-experiment" / "SKILL.md").is_file()
    assert not (codex_home / "auth.json").exists()  # the provider reads OPENAI_API_KEY itself
    assert workspace.dirty_paths(ctx.worktree) == []
    assert not (home / ".codex").exists()
    argv = shlex.split(backend.command(carol, ctx).split("exec ", 1)[1])
    assert f"CODEX_HOME={codex_home}" in argv
    assert {"--no-daemon", "--dangerously-bypass-approvals-and-sandbox", "--dangerously-bypass-hook-trust"} <= set(argv)
    assert argv[argv.index("--model") + 1] == "scripted-model"
    assert argv[-1].startswith("You are carol, researcher of the autoorg research org 'cx'. Start now")


@pytest.mark.skipif(not (CLI_PREFIX / "codex").exists(), reason=f"no Codex CLI in {CLI_PREFIX}: run .ci/install-clis")
def test_an_api_key_signs_the_agents_codex_in_through_codex_login(repo: Path, home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOORG_CODEX_BIN", str(CLI_PREFIX / "codex"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-login")
    ctx, carol = context(repo)
    get_backend("codex").prepare(carol, ctx)
    auth = json.loads((homes.agent_home(ctx.paths, "carol") / "codex" / "auth.json").read_text())
    assert auth["OPENAI_API_KEY"] == "sk-test-login"
    assert not (home / ".codex").exists()


def test_a_chatgpt_login_is_shared_by_link_when_there_is_no_key(repo: Path, home: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake_codex(tmp_path, monkeypatch)
    (home / ".codex").mkdir()
    (home / ".codex" / "auth.json").write_text('{"tokens": {}}')
    ctx, carol = context(repo)
    backend = get_backend("codex")
    assert backend.available() == (True, f"{tmp_path / 'bin' / 'codex'} with codex login ({home / '.codex' / 'auth.json'})")
    backend.prepare(carol, ctx)
    link = homes.agent_home(ctx.paths, "carol") / "codex" / "auth.json"
    assert link.is_symlink() and link.resolve() == (home / ".codex" / "auth.json").resolve()


def test_available_needs_the_cli_and_credentials(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_codex(tmp_path, monkeypatch)
    ok, why = get_backend("codex").available()
    assert not ok and "OPENAI_API_KEY" in why
    monkeypatch.setenv("AUTOORG_CODEX_BIN", str(tmp_path / "nowhere"))
    ok, why = get_backend("codex").available()
    assert not ok and "not found" in why


def test_toml_writer_round_trips_what_codex_config_needs() -> None:
    config = {"model": "m", "n": 3, "flag": False, "list": ["a", "b"],
              "projects": {"/tmp/a b/ü\"q": {"trust_level": "trusted"}},
              "model_providers": {"autoorg": {"base_url": "http://x/v1"}}, "empty": {}}
    assert tomllib.loads(to_toml(config)) == config


def test_auto_alternates_claude_and_codex_when_both_are_ready(home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from autoorg.agents import resolve_auto

    fake_codex(tmp_path, monkeypatch)
    claude = tmp_path / "bin" / "claude"
    claude.write_text("#!/bin/sh\necho '9.9.9 (Claude Code)'\n")
    claude.chmod(0o755)
    monkeypatch.setenv("AUTOORG_CLAUDE_BIN", str(claude))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert resolve_auto(0)[0] == "claude"  # only claude has credentials
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    picks = [resolve_auto(i) for i in range(4)]
    assert [name for name, _ in picks] == ["claude", "codex", "claude", "codex"]
    assert "alternating" in picks[1][1] and "OPENAI_API_KEY" in picks[1][1]


def test_a_custom_endpoint_needs_openai_api_key_and_up_and_doctor_say_so(
        repo: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ChatGPT login is not what the provider autoorg writes for OPENAI_BASE_URL sends: that needs the key."""
    fake_codex(tmp_path, monkeypatch)
    (home / ".codex").mkdir()
    (home / ".codex" / "auth.json").write_text('{"tokens": {}}')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    ok, why = get_backend("codex").available()
    assert not ok and "OPENAI_API_KEY is not set" in why
    doctor = run_cli("doctor", cwd=repo)
    assert doctor.returncode == 0
    assert any(line.startswith("[miss] backend codex") and "OPENAI_API_KEY" in line
               for line in doctor.stdout.splitlines()), doctor.stdout
    (repo / "org.yaml").write_text(ORG.replace(", model: scripted-model", ""))
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org without a model")
    with pytest.raises(BackendError, match="OPENAI_API_KEY is not set"):
        plan_org(str(repo / "org.yaml"))
    dry = run_cli("up", "org.yaml", "--dry-run", cwd=repo)
    assert dry.returncode == 2 and "carol" in dry.stdout  # the plan is printed all the same
    assert "cannot start here: agent 'carol': OPENAI_BASE_URL is http://127.0.0.1:9/v1" in dry.stderr
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # with the key: ready, but no model is a note in up and doctor
    assert get_backend("codex").available() == (True, f"{tmp_path / 'bin' / 'codex'} with OPENAI_API_KEY")
    dry = run_cli("up", "org.yaml", "--dry-run", cwd=repo)
    assert dry.returncode == 0, dry.stderr
    assert "note: agent 'carol': no model: set, so Codex asks http://127.0.0.1:9/v1 for its own default" in dry.stderr
    doctor = run_cli("doctor", cwd=repo)
    assert "[ok  ] backend codex" in doctor.stdout and "its own default model" in doctor.stdout
    (repo / "org.yaml").write_text(ORG)
    assert plan_org(str(repo / "org.yaml"), allow_dirty=True).notes == []
