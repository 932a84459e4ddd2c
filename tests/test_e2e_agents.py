"""End to end: `autoorg up` with LLM agents in real tmux panes, pointed at the scripted model server.

The real Claude Code and Codex CLIs (installed by `.ci/install-clis` into `.npm-prefix/`) and autoorg's own SDK
loops each, by their own tool calls, run `autoorg exp run` on the synthetic task; a message sent while they work
is typed into their pane at their next turn boundary; their status moves working -> idle from their hooks.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoorg import orgcode
from autoorg.agents import homes
from autoorg.paths import org_paths
from autoorg.runtime import tmux
from autoorg.state import read_state
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.model_server import Rule, ScriptedModelServer, anthropic_events, openai_events

CLI_PREFIX = orgcode.source_root() / ".npm-prefix" / "bin"
needs_clis = pytest.mark.skipif(
    not ((CLI_PREFIX / "claude").exists() and (CLI_PREFIX / "codex").exists()),
    reason=f"the real CLIs are not installed in {CLI_PREFIX}: run .ci/install-clis")

MODEL = "scripted-model"
RULES = [
    Rule(r"Start now", ['autoorg exp run -m "scripted run by $AUTOORG_AGENT"'], "Experiment done."),
    Rule(r".", ['autoorg inbox --all --peek; echo "ACK-FROM-$AUTOORG_AGENT"'], "Inbox read."),
]
# What each CLI shows when a first-start dialog is left unanswered (seen on Claude Code 2.1 and Codex 0.169).
DIALOGS = ("trust this folder", "Trust this folder", "Bypass Permissions mode", "Detected a custom API key",
           "Sign in with ChatGPT", "Hooks need review", "Choose the text style", "Unable to connect")


@dataclass
class StatusLog:
    """Every state each agent's status file passed through, sampled every 50 ms."""

    folder: Path
    seen: dict[str, list[str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.folder.glob("*.json"):
                try:
                    state = json.loads(path.read_text())["state"]
                except (OSError, ValueError, KeyError):
                    continue
                states = self.seen.setdefault(path.stem, [])
                if not states or states[-1] != state:
                    states.append(state)
            time.sleep(0.05)


@dataclass
class RunningOrg:
    repo: Path
    socket: str
    server: ScriptedModelServer
    status: StatusLog
    env: dict[str, str]

    @property
    def paths(self):  # type: ignore[no-untyped-def]
        return org_paths(self.repo, "e2e")

    def results(self) -> list[dict[str, object]]:
        proc = run_cli("results", "--json", cwd=self.repo, env=self.env)
        return list(json.loads(proc.stdout)["experiments"]) if proc.returncode == 0 else []

    def screens(self) -> dict[str, str]:
        state = read_state(self.paths)
        return {name: "\n".join(tmux.capture(self.socket, info.pane, lines=300))
                for name, info in state.agents.items()}


@pytest.fixture
def e2e_repo(repo: Path) -> Path:
    shutil.copytree(orgcode.source_root() / "examples" / "synthetic", repo / "examples" / "synthetic")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "synthetic task")
    return repo


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@contextlib.contextmanager
def start_org(repo: Path, socket: str, home: Path, agents: list[str]) -> Iterator[RunningOrg]:
    org = "tag: e2e\ntask: synthetic\nallow_skip_permissions: true\nagents:\n" + "".join(
        f"  - {{name: {a.split(':')[0]}, backend: {a.split(':')[1]}, model: {MODEL}}}\n" for a in agents)
    (repo / "org.yaml").write_text(org)
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org")
    with ScriptedModelServer(RULES) as server:
        env = {"HOME": str(home), "ANTHROPIC_API_KEY": "sk-ant-api03-e2e-test-key-0123456789",
               "ANTHROPIC_BASE_URL": server.url, "OPENAI_API_KEY": "sk-e2e-test", "OPENAI_BASE_URL": server.url + "/v1",
               "AUTOORG_CLAUDE_BIN": str(CLI_PREFIX / "claude"), "AUTOORG_CODEX_BIN": str(CLI_PREFIX / "codex"),
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CONFIG_DIR": "", "CODEX_HOME": ""}
        status = StatusLog(org_paths(repo, "e2e").comms / "status")
        sampler = threading.Thread(target=status.run, daemon=True)
        sampler.start()
        proc = run_cli("up", "org.yaml", "--no-attach", "--socket", socket, cwd=repo, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        try:
            yield RunningOrg(repo=repo, socket=socket, server=server, status=status, env=env)
        finally:
            status.stop.set()
            run_cli("down", "--tag", "e2e", "--socket", socket, cwd=repo, env=env, timeout=120)


def conversation_of(server: ScriptedModelServer, marker: str) -> list[list[tuple[str, str]]]:
    """The main-loop requests (as neutral event lists) whose conversation mentions marker."""
    out = []
    for r in server.main_requests():
        events = anthropic_events(r.body) if r.api == "anthropic" else openai_events(r.body)
        if marker in json.dumps(r.body):
            out.append(events)
    return out


def check_org(org: RunningOrg, names: list[str]) -> None:
    # A message to each agent right away: they are starting or working, so it must wait for a turn boundary.
    tokens = {name: f"tok{i}x{int(time.time()) % 10000}" for i, name in enumerate(names)}
    for name, token in tokens.items():
        sent = run_cli("msg", "send", name, f"please ack {token}", cwd=org.repo, env=org.env)
        assert sent.returncode == 0, sent.stderr

    # Each agent, by its own tool call, ran an experiment that landed in the ledger.
    def measured() -> list[dict[str, object]] | None:
        rows = [r for r in org.results() if r["metric"] is not None]
        return rows if {r["agent"] for r in rows} >= set(names) else None

    rows = retry_until(measured, timeout=240, interval=1.0, message=f"a measured experiment of each of {names}")
    for name in names:
        row = next(r for r in rows if r["agent"] == name)
        assert row["description"] == f"scripted run by {name}"

    # Each got its message at a turn boundary: typed into its pane after its first turn had ended.
    def acked() -> bool:
        return all(f"ACK-FROM-{n}" in "\n".join(org.server.tool_results()) for n in names)

    retry_until(acked, timeout=120, interval=0.5, message="every agent acknowledging its message")
    results = "\n".join(org.server.tool_results())
    for name, token in tokens.items():
        assert token in results  # its `autoorg inbox` printed the message
        first = next(events for events in conversation_of(org.server, token)
                     if any(kind == "user" and token in text for kind, text in events))
        before = first[:max(i for i, (kind, text) in enumerate(first) if kind == "user" and token in text)]
        assert any(kind == "call" and "exp run" in text for kind, text in before), \
            f"{name}'s message arrived before its first turn's experiment"

    # No first-start dialog stalled any pane, and every model call used the model from the spec.
    for name, screen in org.screens().items():
        assert not [d for d in DIALOGS if d in screen], f"{name} shows a dialog:\n{screen}"
    assert {r.body.get("model") for r in org.server.main_requests()} == {MODEL}

    # Status moved working -> idle, reported by the agents' own hooks (or loop), and ends idle.
    def settled() -> bool:
        return all((org.status.seen.get(n) or [""])[-1] == "idle" for n in names)

    retry_until(settled, timeout=60, message="every agent idle")
    for name in names:
        states = org.status.seen[name]
        assert "working" in states and states.index("working") < len(states) - 1, f"{name}: {states}"
        log = homes.agent_home(org.paths, name) / "hooks.log"
        assert not log.exists() or log.read_text() == "", log.read_text()

    # Token accounting: every agent's model use is in the ledger, from its CLI's own records (or its loop), and
    # its experiment carries what the agent had spent when it asked for it.
    def spent() -> dict[str, dict[str, object]] | None:
        proc = run_cli("results", "--json", cwd=org.repo, env=org.env)
        usage = json.loads(proc.stdout)["usage"] if proc.returncode == 0 else {}
        done = all(name in usage and usage[name]["requests"] >= 3 for name in names)
        return usage if done else None

    usage = retry_until(spent, timeout=30, message="every agent's token use in the ledger")
    for name in names:
        assert usage[name]["model"] == MODEL and usage[name]["output_tokens"] > 0, usage[name]
        assert usage[name]["input_tokens"] + usage[name]["cached_input_tokens"] > 0, usage[name]
        assert usage[name]["cost_usd"] is None  # the scripted model has no price
        row = next(r for r in org.results() if r["agent"] == name)
        assert isinstance(row["agent_tokens"], int) and row["agent_tokens"] > 0, row
    shown = run_cli("status", cwd=org.repo, env=org.env).stdout
    assert "model use: " in shown and all(f"  {name} " in shown for name in names), shown


@needs_clis
def test_claude_and_codex_agents_work_in_their_panes(e2e_repo: Path, tmux_socket: str, home: Path) -> None:
    with start_org(e2e_repo, tmux_socket, home, ["alice:claude", "bob:claude", "carol:codex"]) as org:
        check_org(org, ["alice", "bob", "carol"])
        requests = org.server.main_requests()
        systems = [json.dumps(r.body.get("system")) for r in requests if r.api == "anthropic"]
        assert any("You are alice, a researcher" in s for s in systems)  # role prompt appended
        assert any("run-experiment" in json.dumps(r.body) for r in requests if r.api == "anthropic")  # skills
        assert any("You are carol, a researcher" in json.dumps(r.body["input"])
                   for r in requests if r.api == "openai")  # AGENTS.md in the agent's CODEX_HOME
        assert not (homes.agent_home(org.paths, "carol") / "codex" / "app-server-daemon").exists()
    # The user's own config was never written (Claude Code does add a URL-handler .desktop file to ~/.local).
    assert not {".claude.json", ".claude", ".codex"} & {p.name for p in home.iterdir()}


def test_sdk_agents_work_in_their_panes(e2e_repo: Path, tmux_socket: str, home: Path) -> None:
    with start_org(e2e_repo, tmux_socket, home, ["dave:anthropic", "erin:openai"]) as org:
        check_org(org, ["dave", "erin"])
        for name in ("dave", "erin"):
            usage = json.loads((homes.agent_home(org.paths, name) / "usage.json").read_text())
            assert usage["model"] == MODEL and usage["input_tokens"] > 0 and usage["turns"] >= 2
            status = json.loads((org.paths.comms / "status" / f"{name}.json").read_text())
            assert f"{MODEL}: " in status["detail"] and "tokens" in status["detail"]
            transcript = (homes.agent_home(org.paths, name) / "transcript.md").read_text()
            assert "autoorg exp run" in transcript and "Experiment done." in transcript
