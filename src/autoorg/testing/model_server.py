"""A scripted model server on 127.0.0.1: the Anthropic Messages API and the OpenAI Responses API, streaming.

It is a first-class fake model (like llm's MockModel), not a patch: the real Claude Code and Codex CLIs and
autoorg's own SDK loops talk to it over HTTP exactly as they talk to the real APIs. What it answers is decided by
a *script*, a list of rules, from the conversation alone (no per-client state), so any number of agents can share
one server:

- the newest user text of the conversation (system reminders stripped) picks the first rule whose `trigger`
  regex matches it;
- the tool calls the assistant made since that text say how far the rule has got: the next of its `commands`
  is returned as one call of the client's own shell tool (Claude Code's `Bash`, Codex's `exec_command` /
  `shell_command` / `shell`, autoorg's `shell`), with arguments shaped by that tool's schema — or, for Codex's
  code-mode models (tools offered as `additional_tools`), as JavaScript for its `exec` tool;
- when every command has run, the rule's `reply` ends the turn.

Requests without tools (titles, summaries, quota probes) get a short text. Every request is recorded.

Run it by hand for a lab session: `python -m autoorg.testing.model_server --port 8765 --script script.json`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REMINDER_RE = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
# Shell tools by name, in the order they are preferred when a client offers several.
SHELL_TOOLS = ("Bash", "exec_command", "shell_command", "shell", "local_shell")


@dataclass
class Rule:
    """When the newest user text matches `trigger`, run `commands` one tool call at a time, then say `reply`."""

    trigger: str
    commands: list[str] = field(default_factory=list)
    reply: str = "Done."


@dataclass
class Recorded:
    api: str  # "anthropic" | "openai" | "other"
    path: str
    body: dict[str, Any]
    answer: str  # what the server decided: "tool: <command>", "text: <reply>", "aux", "404"
    at: float = field(default_factory=time.monotonic)


# ---------------------------------------------------------------------------------------------------------------
# Conversations in a neutral form: a list of ("user", text) / ("call", command) / ("result", text)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("text", "input_text", "output_text"):
                parts.append(str(block.get("text", "")))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return ""


def anthropic_events(body: dict[str, Any]) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    for msg in body.get("messages", []):
        content = msg.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for block in blocks:
            kind = block.get("type")
            if msg.get("role") == "user" and kind == "text":
                text = REMINDER_RE.sub("", str(block.get("text", ""))).strip()
                if text:
                    events.append(("user", text))
            elif msg.get("role") == "user" and kind == "tool_result":
                events.append(("result", _text_of(block.get("content"))))
            elif msg.get("role") == "assistant" and kind == "tool_use":
                events.append(("call", json.dumps(block.get("input", {}))))
    return events


def openai_events(body: dict[str, Any]) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    items = body.get("input", [])
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            text = REMINDER_RE.sub("", _text_of(item.get("content"))).strip()
            # Codex sends its environment and instructions as user messages in XML-ish envelopes.
            if text and not text.startswith(("<environment_context>", "<user_instructions>", "# AGENTS.md",
                                              "<permissions instructions>")):
                events.append(("user", text))
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            events.append(("call", str(item.get("arguments") or item.get("input") or "")))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            out = item.get("output")
            events.append(("result", out if isinstance(out, str) else json.dumps(out)))
    return events


def decide(rules: list[Rule], events: list[tuple[str, str]]) -> tuple[str, str]:
    """("tool", command) or ("text", reply) for a conversation, from the rules alone."""
    last_user = max((i for i, (kind, _) in enumerate(events) if kind == "user"), default=-1)
    if last_user < 0:
        return "text", "Ready."
    text = events[last_user][1]
    calls = sum(1 for kind, _ in events[last_user + 1:] if kind == "call")
    for rule in rules:
        if re.search(rule.trigger, text, re.S | re.I):
            if calls < len(rule.commands):
                return "tool", rule.commands[calls]
            return "text", rule.reply
    return "text", "I have nothing scripted for that."


def _schema_props(schema: dict[str, Any]) -> dict[str, Any]:
    return dict(schema.get("properties") or {})


def offered_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tool a request offers: `tools`, plus Codex's `additional_tools` input items (namespaces flattened)."""
    found = list(body.get("tools") or [])
    stack = [t for item in body.get("input") or [] if isinstance(item, dict) and item.get("type") == "additional_tools"
             for t in item.get("tools") or []]
    while stack:
        tool = stack.pop(0)
        if tool.get("type") == "namespace":
            stack += tool.get("tools") or []
        else:
            found.append(tool)
    return found


def code_mode_source(command: str) -> str:
    """JavaScript for Codex's code-mode `exec` tool that runs command through its nested exec_command."""
    return ('// @exec: {"yield_time_ms": 120000}\n'
            f"const out = await tools.exec_command({{cmd: {json.dumps(command)}, yield_time_ms: 120000}});\n"
            'text(typeof out === "string" ? out : JSON.stringify(out));\n')


def shell_call(tools: list[dict[str, Any]], command: str, *, api: str) -> tuple[str, Any] | None:
    """The client's shell tool and arguments that run `command`, shaped by that tool's own schema."""
    by_name: dict[str, dict[str, Any]] = {}
    for tool in tools:
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if name:
            by_name[name] = tool
    for name in SHELL_TOOLS:
        offered = by_name.get(name)
        if offered is None:
            continue
        schema = offered.get("input_schema") if api == "anthropic" else offered.get("parameters")
        props = _schema_props(schema or {})
        key = "cmd" if "cmd" in props else "command"
        value: Any = ["bash", "-lc", command] if props.get(key, {}).get("type") == "array" else command
        args: dict[str, Any] = {key: value}
        if "description" in props:
            args["description"] = "scripted step"
        if "yield_time_ms" in props:
            args["yield_time_ms"] = 30000  # let an experiment finish inside one call
        if "timeout_ms" in props:
            args["timeout_ms"] = 120000
        if "timeout" in props and name == "Bash":
            args["timeout"] = 120000
        return name, args
    if api == "openai" and by_name.get("exec", {}).get("type") == "custom":
        return "exec", code_mode_source(command)  # a custom tool takes raw text, not JSON arguments
    return None


# ---------------------------------------------------------------------------------------------------------------
# Wire formats


def _sse(event: str | None, data: dict[str, Any]) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode()


def _tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj)) // 4)


def anthropic_stream(model: str, kind: str, payload: Any, input_tokens: int) -> Iterator[bytes]:
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    yield _sse("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}})
    if kind == "tool":
        name, args = payload
        yield _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": {}}})
        yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "input_json_delta", "partial_json": json.dumps(args)}})
        stop = "tool_use"
    else:
        yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
        yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": str(payload)}})
        stop = "end_turn"
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": _tokens(payload)}})
    yield _sse("message_stop", {"type": "message_stop"})


def anthropic_message(model: str, kind: str, payload: Any, input_tokens: int) -> dict[str, Any]:
    if kind == "tool":
        name, args = payload
        content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": args}]
    else:
        content = [{"type": "text", "text": str(payload)}]
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if kind == "tool" else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": _tokens(payload)}}


def openai_output_item(kind: str, payload: Any) -> dict[str, Any]:
    if kind == "tool":
        name, args = payload
        if isinstance(args, str):
            return {"type": "custom_tool_call", "id": f"ctc_{uuid.uuid4().hex[:24]}",
                    "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": name, "input": args, "status": "completed"}
        return {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}",
                "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": json.dumps(args),
                "status": "completed"}
    return {"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": str(payload), "annotations": []}]}


def openai_response(model: str, item: dict[str, Any], input_tokens: int, status: str,
                    response_id: str | None = None) -> dict[str, Any]:
    out_tokens = _tokens(item)
    return {"id": response_id or f"resp_{uuid.uuid4().hex[:24]}", "object": "response",
            "created_at": int(time.time()),
            "status": status, "model": model, "output": [item] if status == "completed" else [],
            "parallel_tool_calls": False, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None,
            "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input_tokens + out_tokens}}


def openai_stream(model: str, item: dict[str, Any], input_tokens: int) -> Iterator[bytes]:
    seq = iter(range(1_000_000))
    response_id = f"resp_{uuid.uuid4().hex[:24]}"
    created = openai_response(model, item, input_tokens, "in_progress", response_id)
    yield _sse("response.created", {"type": "response.created", "sequence_number": next(seq), "response": created})
    yield _sse("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq),
                                        "response": created})
    if item["type"] == "function_call":
        added = {**item, "arguments": "", "status": "in_progress"}
        yield _sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                  "output_index": 0, "item": added})
        yield _sse("response.function_call_arguments.delta", {
            "type": "response.function_call_arguments.delta", "sequence_number": next(seq), "item_id": item["id"],
            "output_index": 0, "delta": item["arguments"]})
        yield _sse("response.function_call_arguments.done", {
            "type": "response.function_call_arguments.done", "sequence_number": next(seq), "item_id": item["id"],
            "output_index": 0, "arguments": item["arguments"]})
    elif item["type"] == "custom_tool_call":
        added = {**item, "input": "", "status": "in_progress"}
        yield _sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                  "output_index": 0, "item": added})
        yield _sse("response.custom_tool_call_input.delta", {
            "type": "response.custom_tool_call_input.delta", "sequence_number": next(seq), "item_id": item["id"],
            "output_index": 0, "delta": item["input"]})
        yield _sse("response.custom_tool_call_input.done", {
            "type": "response.custom_tool_call_input.done", "sequence_number": next(seq), "item_id": item["id"],
            "output_index": 0, "input": item["input"]})
    else:
        text = item["content"][0]["text"]
        added = {**item, "status": "in_progress", "content": []}
        yield _sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                  "output_index": 0, "item": added})
        part = {"type": "output_text", "text": "", "annotations": []}
        yield _sse("response.content_part.added", {"type": "response.content_part.added", "sequence_number": next(seq),
                                                   "item_id": item["id"], "output_index": 0, "content_index": 0,
                                                   "part": part})
        yield _sse("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": next(seq),
                                                  "item_id": item["id"], "output_index": 0, "content_index": 0,
                                                  "delta": text, "logprobs": []})
        yield _sse("response.output_text.done", {"type": "response.output_text.done", "sequence_number": next(seq),
                                                 "item_id": item["id"], "output_index": 0, "content_index": 0,
                                                 "text": text, "logprobs": []})
        yield _sse("response.content_part.done", {"type": "response.content_part.done", "sequence_number": next(seq),
                                                  "item_id": item["id"], "output_index": 0, "content_index": 0,
                                                  "part": {**part, "text": text}})
    yield _sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                             "output_index": 0, "item": item})
    done = openai_response(model, item, input_tokens, "completed", response_id)
    yield _sse("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": done})


# ---------------------------------------------------------------------------------------------------------------
# The server


class ScriptedModelServer:
    """`with ScriptedModelServer(rules) as server:` → `server.url`, `server.requests`."""

    def __init__(self, rules: list[Rule], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.rules = list(rules)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return None

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [], "models": []})
                else:
                    self._json(200, {"ok": True})

            def do_HEAD(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                path = self.path.split("?")[0]
                if path.endswith("/messages/count_tokens"):
                    owner._record("anthropic", path, body, "count")
                    self._json(200, {"input_tokens": _tokens(body)})
                elif path.endswith("/messages"):
                    self._anthropic(path, body)
                elif path.endswith("/responses"):
                    self._openai(path, body)
                else:
                    owner._record("other", path, body, "404")
                    self._json(404, {"error": {"type": "not_found", "message": f"no {path} here"}})

            def _json(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chunks: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _anthropic(self, path: str, body: dict[str, Any]) -> None:
                tools = body.get("tools") or []
                kind, payload, answer = owner._answer(tools, anthropic_events(body), api="anthropic")
                owner._record("anthropic", path, body, answer)
                model, tokens = str(body.get("model", "scripted")), _tokens(body)
                if body.get("stream"):
                    self._stream(anthropic_stream(model, kind, payload, tokens))
                else:
                    self._json(200, anthropic_message(model, kind, payload, tokens))

            def _openai(self, path: str, body: dict[str, Any]) -> None:
                tools = offered_tools(body)
                kind, payload, answer = owner._answer(tools, openai_events(body), api="openai")
                owner._record("openai", path, body, answer)
                model, tokens = str(body.get("model", "scripted")), _tokens(body)
                item = openai_output_item(kind, payload)
                if body.get("stream"):
                    self._stream(openai_stream(model, item, tokens))
                else:
                    self._json(200, openai_response(model, item, tokens, "completed"))

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-model", daemon=True)

    def _answer(self, tools: list[dict[str, Any]], events: list[tuple[str, str]],
                *, api: str) -> tuple[str, Any, str]:
        if not tools:
            return "text", "ok", "aux"
        kind, value = decide(self.rules, events)
        if kind == "tool":
            call = shell_call(tools, value, api=api)
            if call is None:
                return "text", "No shell tool was offered.", "text: no shell tool"
            return "tool", call, f"tool: {value}"
        return "text", value, f"text: {value}"

    def _record(self, api: str, path: str, body: dict[str, Any], answer: str) -> None:
        with self._lock:
            self.requests.append(Recorded(api=api, path=path, body=body, answer=answer))

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def main_requests(self, api: str | None = None) -> list[Recorded]:
        """Requests of agents' main loops (with tools), optionally of one API."""
        with self._lock:
            return [r for r in self.requests if r.answer not in ("aux", "count", "404")
                    and (api is None or r.api == api)]

    def tool_results(self) -> list[str]:
        """Every tool result any client has sent back (what its shell commands printed)."""
        out = []
        for r in self.main_requests():
            events = anthropic_events(r.body) if r.api == "anthropic" else openai_events(r.body)
            out += [text for kind, text in events if kind == "result"]
        return out

    def start(self) -> ScriptedModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a script of tool calls as the Anthropic and OpenAI APIs.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", help='JSON list of {"trigger", "commands", "reply"}')
    parser.add_argument("--log", action="store_true", help="print each request's path and answer")
    args = parser.parse_args()
    rules = [Rule(**r) for r in json.loads(Path(args.script).read_text())] if args.script else [Rule(".", ["echo hello"])]
    with ScriptedModelServer(rules, port=args.port) as server:
        print(f"scripted model server on {server.url}", flush=True)
        seen = 0
        try:
            while True:
                time.sleep(0.2)
                if args.log:
                    for r in server.requests[seen:]:
                        print(f"{r.api:9} {r.path:28} model={r.body.get('model')} {r.answer}", flush=True)
                    seen = len(server.requests)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
