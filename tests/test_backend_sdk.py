"""The built-in SDK loop (`backend: anthropic` / `openai`) on the real SDKs, against the scripted model server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoorg.agents import get_backend
from autoorg.agents.sdk import AgentLoop, Tokens, Toolbox, Usage, make_chat
from autoorg.testing.model_server import Rule, ScriptedModelServer

RULES = [
    Rule("write the file", ["echo made-by-$0 > made.txt", "cat made.txt"], "The file is written."),
    Rule(".", ["echo fallback"], "Nothing else to do."),
]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(RULES) as srv:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
        yield srv


def make_loop(backend: str, tmp_path: Path) -> AgentLoop:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    chat = make_chat(backend, "scripted-model", "You are tester, a researcher.")
    return AgentLoop(chat=chat, tools=Toolbox(worktree), usage=Usage(backend, "scripted-model"), paths=None,
                     agent="tester", folder=tmp_path / "agent")


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_a_turn_runs_the_models_tool_calls_in_the_worktree(backend: str, server: ScriptedModelServer,
                                                          tmp_path: Path) -> None:
    loop = make_loop(backend, tmp_path)
    loop.folder.mkdir()
    loop.turn("please write the file")
    assert (tmp_path / "wt" / "made.txt").read_text().startswith("made-by-bash")
    requests = server.main_requests(backend)
    assert [r.answer for r in requests] == ["tool: echo made-by-$0 > made.txt", "tool: cat made.txt",
                                           "text: The file is written."]
    assert all(r.body["model"] == "scripted-model" for r in requests)
    assert "made-by-bash" in server.tool_results()[-1]
    assert loop.usage.requests == 3 and loop.usage.input_tokens > 0 and loop.usage.output_tokens > 0
    transcript = (loop.folder / "transcript.md").read_text()
    assert "please write the file" in transcript and "The file is written." in transcript


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_a_line_typed_during_a_turn_reaches_the_model_at_the_next_tool_boundary(
        backend: str, server: ScriptedModelServer, tmp_path: Path) -> None:
    loop = make_loop(backend, tmp_path)
    loop.folder.mkdir()
    loop.lines.put("stop after this, I will take over")  # typed while the model works
    loop.turn("please write the file")
    second = server.main_requests(backend)[1].body
    assert "A person at your terminal says: stop after this, I will take over" in json.dumps(second)
    assert "(interjection)" in (loop.folder / "transcript.md").read_text()


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_the_loop_takes_turns_from_typed_lines_reports_usage_and_ends_on_eof(
        backend: str, server: ScriptedModelServer, tmp_path: Path) -> None:
    loop = make_loop(backend, tmp_path)
    read_fd, write_fd = os.pipe()
    with open(write_fd, "w") as typed:
        typed.write("\n   \nplease write the file\n/exit\nnever read\n")
    with open(read_fd) as stdin:
        assert loop.run(None, stdin=stdin) == 0
    requests = server.main_requests(backend)
    assert [r.answer for r in requests] == ["tool: echo made-by-$0 > made.txt", "tool: cat made.txt",
                                           "text: The file is written."]
    assert not any("never read" in json.dumps(r.body) or "/exit" in json.dumps(r.body) for r in requests)
    usage = json.loads((loop.folder / "usage.json").read_text())
    assert usage["turns"] == 1 and usage["requests"] == 3 and usage["model"] == "scripted-model"


def test_cost_is_counted_for_priced_models_and_unknown_otherwise() -> None:
    priced = Usage("anthropic", "claude-sonnet-4-5-20250929")  # a dated id finds its family's price
    priced.add(Tokens(input=1_000_000, output=100_000, cached=1_000_000, cache_write=100_000))
    assert priced.cost_usd == pytest.approx(3.0 + 1.5 + 0.3 + 0.375)
    assert priced.summary() == "claude-sonnet-4-5-20250929: 2.1M in (1.0M cached) / 100k out tokens, $5.1750"
    unknown = Usage("openai", "scripted-model")
    unknown.add(Tokens(input=10, output=10))
    assert unknown.cost_usd is None and "cost unknown" in unknown.summary()


def test_tools_stay_in_the_worktree_and_edit_only_unique_text(tmp_path: Path) -> None:
    tools = Toolbox(tmp_path)
    assert tools.run("write_file", {"path": "a/b.txt", "content": "one\ntwo\ntwo\n"}).startswith("wrote a/b.txt")
    assert "outside your worktree" in tools.run("write_file", {"path": "../escape.txt", "content": "x"})
    assert not (tmp_path.parent / "escape.txt").exists()
    assert "occurs 2 times" in tools.run("edit_file", {"path": "a/b.txt", "old": "two", "new": "2"})
    assert tools.run("edit_file", {"path": "a/b.txt", "old": "one", "new": "1"}) == "edited a/b.txt"
    assert tools.run("read_file", {"path": "a/b.txt", "offset": 2, "limit": 1}).split() == ["2", "two"]
    assert tools.run("shell", {"command": "exit 3"}).startswith("[exit 3]")
    assert tools.run("read_file", {}).startswith("error: missing argument")
    assert tools.run("nope", {}) == "error: no tool named nope"
    autoorg = tools.run("autoorg", {"args": "--version"})
    assert "[exit 0]" in autoorg and "autoorg" in autoorg


def test_an_interrupted_turn_answers_every_pending_tool_call(server: ScriptedModelServer, tmp_path: Path) -> None:
    """Ctrl-C in the middle of tool calls: the conversation stays valid (each call gets a result) and the next
    turn is accepted by the API."""
    loop = make_loop("anthropic", tmp_path)
    loop.folder.mkdir()
    original = loop.tools.run

    def interrupted(name: str, args: dict[str, object]) -> str:
        raise KeyboardInterrupt

    loop.tools.run = interrupted  # type: ignore[method-assign]
    loop.turn("please write the file")
    loop.tools.run = original  # type: ignore[method-assign]
    loop.turn("please write the file")
    first, resumed = server.main_requests("anthropic")[:2]
    assert first.answer == resumed.answer == "tool: echo made-by-$0 > made.txt"  # the second turn starts over
    flat = json.dumps(resumed.body["messages"])
    assert "[stopped: the person at the terminal interrupted]" in flat


@pytest.mark.parametrize("name,var", [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")])
def test_sdk_backends_are_available_only_with_their_key(name: str, var: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(var, raising=False)
    ok, why = get_backend(name).available()
    assert not ok and var in why
    monkeypatch.setenv(var, "k")
    assert get_backend(name).available()[0]


def test_autoorg_agent_outside_a_pane_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "autoorg", "agent", "--backend", "anthropic"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "AUTOORG_AGENT"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("autoorg: ") and "Traceback" not in proc.stderr
