"""The built-in SDK agent (`backend: anthropic` / `openai`): a compact tool loop in the agent's pane.

`autoorg agent --backend anthropic|openai` runs it. The model gets five tools — `shell` (in the worktree),
`read_file`, `write_file`, `edit_file`, and `autoorg` (the org's own commands) — and works turn by turn:

- a turn starts from a user message: the kickoff, a doorbell the daemon types into the pane, or a person typing;
- what the model says streams into the pane, each tool call is shown as it runs, and the whole conversation is
  appended to a Markdown transcript (`<home>/agents/<agent>/transcript.md`);
- a line typed while the model works is handed to it at the next tool boundary (an interjection); Ctrl-C stops
  the turn at once and hands the pane to the person; Ctrl-D or `/exit` ends the agent;
- its state (`working` / `idle`) goes to its status file, its token use and cost to `usage.json` and the
  ledger's `agent_usage` table.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from autoorg import comms
from autoorg.agents import homes, usage
from autoorg.errors import AutoorgError, BackendError
from autoorg.paths import OrgPaths, atomic_write_text, autoorg_command, resolve_org
from autoorg.spec.org import load_org

# The model an SDK agent uses when its spec names none. The only place model ids live in the loop.
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-5"}
MAX_TOKENS = 8192
MAX_TOOL_OUTPUT = 20_000  # characters of a tool's output the model sees (head and tail kept)
SHELL_TIMEOUT_S = 3600

TOOLS: list[dict[str, Any]] = [
    {"name": "shell", "description": "Run a bash command in your worktree; returns its exit code and output.",
     "parameters": {"type": "object", "properties": {
         "command": {"type": "string", "description": "bash command line"},
         "timeout_s": {"type": "integer", "description": f"seconds before it is killed (default {SHELL_TIMEOUT_S})"}},
         "required": ["command"]}},
    {"name": "read_file", "description": "Read a text file (path relative to your worktree), with line numbers.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "offset": {"type": "integer", "description": "first line, from 1"},
         "limit": {"type": "integer", "description": "number of lines"}}, "required": ["path"]}},
    {"name": "write_file", "description": "Write a whole file inside your worktree (created or replaced).",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                    "required": ["path", "content"]}},
    {"name": "edit_file", "description": "Replace one exact, unique occurrence of `old` with `new` in a file.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
         "required": ["path", "old", "new"]}},
    {"name": "autoorg", "description": "Run an autoorg command, e.g. `exp run -m \"what changed\"`, `results`, "
                                       "`inbox`, `msg send all \"text\"`, `idea list`, `board`.",
     "parameters": {"type": "object", "properties": {"args": {"type": "string", "description": "arguments"}},
                    "required": ["args"]}},
]


# ---------------------------------------------------------------------------------------------------------------
# Tools


def clip(text: str, limit: int = MAX_TOOL_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


class Toolbox:
    """The tools, run in the agent's worktree. Every failure is an answer to the model, never an exception."""

    def __init__(self, worktree: Path) -> None:
        self.worktree = worktree.resolve()

    def run(self, name: str, args: dict[str, Any]) -> str:
        try:
            if name == "shell":
                return self.shell(str(args["command"]), int(args.get("timeout_s") or SHELL_TIMEOUT_S))
            if name == "autoorg":

                return self.shell(autoorg_command() + " " + str(args["args"]), SHELL_TIMEOUT_S)
            if name == "read_file":
                return self.read_file(str(args["path"]), int(args.get("offset") or 1), args.get("limit"))
            if name == "write_file":
                path = self._inside(str(args["path"]))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(str(args["content"]), encoding="utf-8")
                return f"wrote {path.relative_to(self.worktree)} ({len(str(args['content']))} characters)"
            if name == "edit_file":
                return self.edit_file(str(args["path"]), str(args["old"]), str(args["new"]))
        except KeyError as exc:
            return f"error: missing argument {exc}"
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return f"error: {exc}"
        return f"error: no tool named {name}"

    def _inside(self, path: str) -> Path:
        full = (self.worktree / path).resolve()
        if full != self.worktree and self.worktree not in full.parents:
            raise ValueError(f"{path} is outside your worktree {self.worktree}")
        return full

    def shell(self, command: str, timeout_s: int) -> str:
        try:
            proc = subprocess.run(["bash", "-c", command], cwd=self.worktree, capture_output=True, text=True,
                                  timeout=timeout_s, stdin=subprocess.DEVNULL, errors="replace")
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return clip(f"{out}\n[killed after {timeout_s}s]")
        return clip(f"[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}")

    def read_file(self, path: str, offset: int, limit: Any) -> str:
        lines = (self.worktree / path).read_text(encoding="utf-8").splitlines()
        end = len(lines) if limit is None else offset - 1 + int(limit)
        return clip("\n".join(f"{i:>6}  {line}" for i, line in enumerate(lines[offset - 1:end], offset)))

    def edit_file(self, path: str, old: str, new: str) -> str:
        full = self._inside(path)
        text = full.read_text(encoding="utf-8")
        count = text.count(old)
        if count != 1:
            return f"error: `old` occurs {count} times in {path}; it must occur exactly once"
        full.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"edited {path}"


# ---------------------------------------------------------------------------------------------------------------
# Models


@dataclass
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass
class Usage:
    """This process's model use (one agent session); priced by usage.price, recorded by usage.record."""

    backend: str
    model: str
    input_tokens: int = 0  # fresh input (prompt-cache reads and writes apart)
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0
    turns: int = 0
    cost_usd: float | None = None
    session: str = field(default_factory=lambda: f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")

    def add(self, tokens: Tokens) -> None:
        self.input_tokens += tokens.input
        self.output_tokens += tokens.output
        self.cached_input_tokens += tokens.cached
        self.cache_write_tokens += tokens.cache_write
        self.requests += 1
        self.cost_usd = self.session_usage().cost_usd

    def session_usage(self) -> usage.SessionUsage:
        return usage.SessionUsage(
            session=f"{self.backend}:{self.session}", backend=self.backend, model=self.model,
            input_tokens=self.input_tokens, cached_input_tokens=self.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens, output_tokens=self.output_tokens, requests=self.requests)

    def summary(self) -> str:
        return f"{self.model}: " + usage.summary(self.session_usage().row())


@dataclass
class Tokens:
    """One response's token counts; `input` is fresh input, `cached` was read from the prompt cache."""

    input: int = 0
    output: int = 0
    cached: int = 0
    cache_write: int = 0


class Chat(Protocol):
    """One conversation with one model, in that API's own message format."""

    def add_user(self, text: str) -> None: ...

    def step(self, on_text: Callable[[str], None]) -> tuple[list[ToolCall], Tokens]:
        """One model call: stream its text, return its tool calls and the tokens it used."""
        ...

    def add_results(self, results: list[tuple[ToolCall, str]], note: str | None) -> None: ...


def _json_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": value}


class AnthropicChat:
    """The Messages API (streaming). Key and endpoint from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL."""

    def __init__(self, model: str, system: str) -> None:
        import anthropic

        self.client = anthropic.Anthropic(max_retries=4)
        self.model, self.system = model, system
        self.messages: list[dict[str, Any]] = []
        self.tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                      for t in TOOLS]

    def add_user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": [{"type": "text", "text": text}]})

    def step(self, on_text: Callable[[str], None]) -> tuple[list[ToolCall], Tokens]:
        with self.client.messages.stream(model=self.model, max_tokens=MAX_TOKENS, system=self.system,
                                         messages=self.messages, tools=self.tools) as stream:  # type: ignore[arg-type]
            for text in stream.text_stream:
                on_text(text)
            final = stream.get_final_message()
        content = [block.model_dump(exclude_none=True) for block in final.content]
        self.messages.append({"role": "assistant", "content": content})
        calls = [ToolCall(b.id, b.name, dict(b.input)) for b in final.content if b.type == "tool_use"]
        used = final.usage
        return calls, Tokens(input=used.input_tokens, output=used.output_tokens,
                             cached=used.cache_read_input_tokens or 0, cache_write=used.cache_creation_input_tokens or 0)

    def add_results(self, results: list[tuple[ToolCall, str]], note: str | None) -> None:
        blocks: list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": c.id, "content": out}
                                        for c, out in results]
        if note:
            blocks.append({"type": "text", "text": note})
        self.messages.append({"role": "user", "content": blocks})


class OpenAIChat:
    """The Responses API (streaming), stateless: the whole input is sent each call (`store=False`). Key and
    endpoint from OPENAI_API_KEY / OPENAI_BASE_URL."""

    def __init__(self, model: str, system: str) -> None:
        import openai

        self.client = openai.OpenAI(max_retries=4)
        self.model, self.system = model, system
        self.items: list[dict[str, Any]] = []
        self.tools = [{"type": "function", "name": t["name"], "description": t["description"],
                       "parameters": t["parameters"], "strict": False} for t in TOOLS]

    def add_user(self, text: str) -> None:
        self.items.append({"role": "user", "content": text})

    def step(self, on_text: Callable[[str], None]) -> tuple[list[ToolCall], Tokens]:
        with self.client.responses.stream(model=self.model, instructions=self.system, input=self.items,  # type: ignore[arg-type]
                                          tools=self.tools, store=False) as stream:  # type: ignore[arg-type]
            for event in stream:
                if event.type == "response.output_text.delta":
                    on_text(event.delta)
            final = stream.get_final_response()
        calls = []
        for item in final.output:
            if item.type == "function_call":
                self.items.append({"type": "function_call", "call_id": item.call_id, "name": item.name,
                                   "arguments": item.arguments})
                calls.append(ToolCall(item.call_id, item.name, _json_args(item.arguments)))
            elif item.type == "message":
                text = "".join(getattr(part, "text", "") for part in item.content)
                self.items.append({"role": "assistant", "content": text})
        used = final.usage
        if used is None:
            return calls, Tokens()
        details = used.input_tokens_details
        cached = (details.cached_tokens or 0) if details else 0
        return calls, Tokens(input=used.input_tokens - cached, output=used.output_tokens, cached=cached)

    def add_results(self, results: list[tuple[ToolCall, str]], note: str | None) -> None:
        for call, out in results:
            self.items.append({"type": "function_call_output", "call_id": call.id, "output": out})
        if note:
            self.items.append({"role": "user", "content": note})


def make_chat(backend: str, model: str, system: str) -> Chat:
    if backend == "anthropic":
        return AnthropicChat(model, system)
    if backend == "openai":
        return OpenAIChat(model, system)
    raise BackendError(f"no SDK loop for backend '{backend}' (anthropic, openai)")


# ---------------------------------------------------------------------------------------------------------------
# The loop


EXIT = object()  # what the stdin reader queues on end of input


@dataclass
class AgentLoop:
    """One agent's conversation in its pane: turns from typed lines, tools in its worktree, status and usage."""

    chat: Chat
    tools: Toolbox
    usage: Usage
    paths: OrgPaths | None
    agent: str
    folder: Path  # <home>/agents/<agent>/: transcript.md, usage.json
    out: TextIO = field(default_factory=lambda: sys.stdout)
    lines: queue.Queue[Any] = field(default_factory=queue.Queue)
    exiting: bool = False

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def note(self, markdown: str) -> None:
        with (self.folder / "transcript.md").open("a", encoding="utf-8") as fh:
            fh.write(markdown + "\n\n")

    def report(self, state: str, detail: str = "") -> None:
        atomic_write_text(self.folder / "usage.json", json.dumps(asdict(self.usage), indent=2) + "\n")
        if self.paths is None:
            return
        try:
            comms.report_status(self.paths, self.agent, state, detail or self.usage.summary())
            if self.usage.requests:
                usage.record(self.paths, self.agent, [self.usage.session_usage()])
        except AutoorgError as exc:  # a status write must never stop the agent
            self.say(f"[autoorg: status not written: {exc}]")

    def read_stdin(self, stream: TextIO) -> None:
        """Reader thread: every typed line into the queue; end of input queues EXIT."""
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(EXIT)

    def pending_lines(self) -> list[str]:
        got: list[str] = []
        while not self.exiting:
            try:
                item = self.lines.get_nowait()
            except queue.Empty:
                return got
            if item is EXIT or str(item).strip() == "/exit":
                self.exiting = True  # ends the agent once this turn is over; never shown to the model
                return got
            if str(item).strip():
                got.append(str(item))
        return got

    def next_prompt(self) -> str | None:
        """Wait (idle) for the next non-empty line; None to exit."""
        if self.exiting:
            return None
        self.report("idle")
        self.say("\n> ", end="")
        while True:
            try:
                item = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                self.say("\n(Ctrl-D or /exit to end the agent)\n> ", end="")
                continue
            if item is EXIT:
                return None
            text = str(item).strip()
            if text == "/exit":
                return None
            if text:
                return text

    def turn(self, prompt: str) -> None:
        """One turn: the model and its tools until it stops calling tools, or Ctrl-C."""
        self.usage.turns += 1
        self.say(f"── {self.agent} · turn {self.usage.turns} ──")
        self.note(f"## you ({time.strftime('%H:%M:%S')})\n\n{prompt}")
        self.report("working", f"turn {self.usage.turns}")
        self.chat.add_user(prompt)
        pending: list[ToolCall] = []
        results: list[tuple[ToolCall, str]] = []
        try:
            while True:
                spoken: list[str] = []

                def on_text(text: str, spoken: list[str] = spoken) -> None:
                    spoken.append(text)
                    self.say(text, end="")

                pending, used = self.chat.step(on_text)
                self.usage.add(used)
                self.report("working", self.usage.summary())  # before the tools: an experiment they ask for
                if spoken:                                     # is stamped with what the agent had spent
                    self.say()
                    self.note("## assistant\n\n" + "".join(spoken))
                if not pending:
                    return
                results = []
                for call in pending:
                    self.say(f"\x1b[2m$ {call.name} {json.dumps(call.args)[:300]}\x1b[0m")
                    output = self.tools.run(call.name, call.args)
                    results.append((call, output))
                    self.say("\x1b[2m" + clip(output, 1500) + "\x1b[0m")
                    self.note(f"### {call.name}\n\n```\n{json.dumps(call.args, indent=1)}\n```\n\n```\n{output}\n```")
                typed = self.pending_lines()
                note = "A person at your terminal says: " + "\n".join(typed) if typed else None
                if note:
                    self.say(f"[interjection] {' / '.join(typed)}")
                    self.note(f"## you (interjection)\n\n{note}")
                self.chat.add_results(results, note)
                pending, results = [], []
        except KeyboardInterrupt:
            done = {c.id for c, _ in results}
            stopped = results + [(c, "[stopped: the person at the terminal interrupted]") for c in pending
                                 if c.id not in done]
            if stopped:
                self.chat.add_results(stopped, None)
            self.say("\n[interrupted: the pane is yours; type to continue]")
            self.note("## (interrupted by the person at the terminal)")

    def run(self, kickoff: str | None, stdin: TextIO | None = None) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        reader = threading.Thread(target=self.read_stdin, args=(stdin or sys.stdin,), daemon=True,
                                  name="stdin-reader")
        reader.start()
        prompt = kickoff
        while True:
            if prompt is None:
                prompt = self.next_prompt()
                if prompt is None:
                    self.report("stopped", self.usage.summary())
                    return 0
            try:
                self.turn(prompt)
            except Exception as exc:  # noqa: BLE001 - an API error ends the turn, not the agent
                self.say(f"\n[model error: {type(exc).__name__}: {exc}]")
                self.note(f"## error\n\n{type(exc).__name__}: {exc}")
                self.report("idle", f"model error: {type(exc).__name__}")
            prompt = None


def run_agent(backend: str, *, model: str | None, system: str, kickoff: str | None, worktree: Path,
              paths: OrgPaths | None, agent: str, folder: Path) -> int:
    """What `autoorg agent --backend anthropic|openai` runs."""
    chosen = model or DEFAULT_MODELS[backend]
    chat = make_chat(backend, chosen, system)
    loop = AgentLoop(chat=chat, tools=Toolbox(worktree), usage=Usage(backend=backend, model=chosen), paths=paths,
                     agent=agent, folder=folder)
    loop.say(f"autoorg {backend} agent {agent} · {chosen} · {worktree}")
    loop.say("type at any time: a line reaches the model at its next step · Ctrl-C stops a turn · Ctrl-D ends")
    return loop.run(kickoff)


def run_in_pane(backend: str, *, model: str | None = None, system_file: Path | None = None,
                kickoff: str | None = None) -> int:
    """`autoorg agent --backend anthropic|openai` in an agent's pane: who, where and what from the environment
    (AUTOORG_AGENT, AUTOORG_HOME, the current directory as worktree) and the org's resolved spec."""

    agent = os.environ.get("AUTOORG_AGENT")
    if not agent:
        raise BackendError("autoorg agent runs in an agent's pane: AUTOORG_AGENT is not set")
    paths = resolve_org(None, None)
    if model is None and paths.org_yaml.is_file():
        model = load_org(str(paths.org_yaml)).agent(agent).model
    folder = homes.agent_home(paths, agent)
    system_path = system_file or folder / "role.md"
    if not system_path.is_file():
        raise BackendError(f"no role prompt at {system_path}; `autoorg up` writes it (or pass --system-file)")
    return run_agent(backend, model=model, system=system_path.read_text(encoding="utf-8"), kickoff=kickoff,
                     worktree=Path.cwd(), paths=paths, agent=agent, folder=folder)
