"""What an agent's model calls cost: tokens and dollars per agent session, read from the agents' own records.

- `claude`: Claude Code's transcripts in the agent's config home, `claude/projects/*/*.jsonl`. Every assistant
  message carries its `usage`; Claude Code writes one line per content block, each with the message's usage, so
  lines are counted once per message id (the last one wins: it has the final output count).
- `codex`: Codex's rollouts in the agent's home, `codex/sessions/**/rollout-*.jsonl`. Each response's
  `token_usage_record` (or, in older versions, `token_count` event) holds the thread's running total; the last one
  is the session's total.
- `anthropic` / `openai`: the SDK loop counts each response's usage itself (agent_loop) and records it here.

Totals land in the ledger's `agent_usage` table, one row per agent session (replaced as the session grows), so a
restarted agent adds a session rather than resetting its count. Input tokens are split three ways: fresh input,
input read from the prompt cache, and input written to it; they are priced differently.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoorg.agents import homes
from autoorg.errors import AutoorgError
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths

# USD per million tokens: (input, output). A model id matches its longest key that it starts with, so dated ids
# ("claude-sonnet-4-5-20250929") find their family. Cache reads cost CACHE_READ of the input price, cache writes
# CACHE_WRITE. An unknown model has no cost (None), never a guessed one.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0), "claude-opus-4-1": (15.0, 75.0), "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0), "claude-sonnet-4": (3.0, 15.0), "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5": (1.25, 10.0), "gpt-5-codex": (1.25, 10.0), "gpt-5-mini": (0.25, 2.0), "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "o3": (2.0, 8.0), "o4-mini": (1.1, 4.4),
}
CACHE_READ = 0.1
CACHE_WRITE = 1.25


def price(model: str) -> tuple[float, float] | None:
    keys = [k for k in PRICES_PER_MTOK if model == k or model.startswith(k + "-")]
    return PRICES_PER_MTOK[max(keys, key=len)] if keys else None


@dataclass
class SessionUsage:
    """One agent session's tokens so far. `input_tokens` is fresh input only (cache reads and writes apart)."""

    session: str
    backend: str
    model: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    @property
    def cost_usd(self) -> float | None:
        rates = price(self.model)
        if rates is None:
            return None
        fresh, out = rates
        return (self.input_tokens * fresh + self.cached_input_tokens * fresh * CACHE_READ
                + self.cache_write_tokens * fresh * CACHE_WRITE + self.output_tokens * out) / 1e6

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "cost_usd": self.cost_usd}


def summary(total: dict[str, Any]) -> str:
    """`1.2M in (800k cached) / 31k out tokens, $4.2100` for a totals row of `ledger.usage_totals`."""
    def short(n: int) -> str:
        return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else str(n)

    inputs = total["input_tokens"] + total["cached_input_tokens"] + total["cache_write_tokens"]
    cached = f" ({short(total['cached_input_tokens'])} cached)" if total["cached_input_tokens"] else ""
    cost = "cost unknown" if total["cost_usd"] is None else f"${total['cost_usd']:.4f}"
    return f"{short(inputs)} in{cached} / {short(total['output_tokens'])} out tokens, {cost}"


# ---------------------------------------------------------------------------------------------------------------
# Reading the CLIs' own records


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """JSON objects of a JSONL file; a torn last line (the CLI is still writing) is skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict):
                        yield item
    except OSError:
        return


def claude_sessions(home: Path) -> list[SessionUsage]:
    """Claude Code sessions under a config home (`CLAUDE_CONFIG_DIR`), one per transcript file."""
    sessions = []
    for path in sorted((home / "projects").glob("*/*.jsonl")):
        messages: dict[str, tuple[str, dict[str, Any]]] = {}
        for item in _lines(path):
            message = item.get("message")
            if item.get("type") != "assistant" or not isinstance(message, dict):
                continue
            usage = message.get("usage")
            if isinstance(usage, dict) and message.get("model") != "<synthetic>":
                key = str(message.get("id") or item.get("requestId") or item.get("uuid") or len(messages))
                messages[key] = (str(message.get("model") or ""), usage)
        if not messages:
            continue
        s = SessionUsage(session=f"claude:{path.stem}", backend="claude")
        for model, usage in messages.values():
            s.model = model or s.model
            s.input_tokens += int(usage.get("input_tokens") or 0)
            s.cached_input_tokens += int(usage.get("cache_read_input_tokens") or 0)
            s.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
            s.output_tokens += int(usage.get("output_tokens") or 0)
            s.requests += 1
        sessions.append(s)
    return sessions


def codex_sessions(home: Path) -> list[SessionUsage]:
    """Codex sessions under a `CODEX_HOME`, one per rollout file. Codex 0.169 writes a `token_usage_record` per
    response as soon as it arrives (before its tool calls run) with the thread's running total; older versions
    only a `token_count` event after the tools ran. The last running total of either kind is the session's."""
    sessions = []
    for path in sorted((home / "sessions").glob("**/rollout-*.jsonl")):
        model, total, counts = "", None, 0
        records: set[Any] = set()
        for item in _lines(path):
            payload = item.get("payload")
            if not isinstance(payload, dict):
                continue
            if item.get("type") == "turn_context" and payload.get("model"):
                model = str(payload["model"])
            if item.get("type") == "token_usage_record" and isinstance(payload.get("thread_token_usage"), dict):
                total = payload["thread_token_usage"]
                records.add(payload.get("response_id") or len(records))
            info = payload.get("info") if payload.get("type") == "token_count" else None
            if isinstance(info, dict) and isinstance(info.get("total_token_usage"), dict):
                if info["total_token_usage"] != total:
                    counts += 1  # Codex repeats the last count on some events; a new total is a new response
                total = info["total_token_usage"]
        if total is None:
            continue
        cached = int(total.get("cached_input_tokens") or 0)
        written = int(total.get("cache_write_input_tokens") or 0)
        sessions.append(SessionUsage(
            session=f"codex:{path.stem}", backend="codex", model=model,
            input_tokens=max(int(total.get("input_tokens") or 0) - cached - written, 0),  # Codex counts both in
            cached_input_tokens=cached, cache_write_tokens=written, output_tokens=int(total.get("output_tokens") or 0),
            requests=len(records) or counts))
    return sessions


def cli_sessions(agent_home: Path) -> list[SessionUsage]:
    """Every CLI session recorded under an agent's folder (`<home>/agents/<agent>/`)."""
    return claude_sessions(agent_home / "claude") + codex_sessions(agent_home / "codex")


# ---------------------------------------------------------------------------------------------------------------
# Into the ledger


def record(paths: OrgPaths, agent: str, sessions: list[SessionUsage]) -> None:
    if sessions:
        ledger.record_usage(paths, agent, [s.row() for s in sessions])


def refresh(paths: OrgPaths, agent: str) -> None:
    """Read an agent's CLI records into the ledger; best effort (usage never stops an experiment or a hook)."""
    with contextlib.suppress(AutoorgError, OSError):
        record(paths, agent, cli_sessions(homes.agent_home(paths, agent)))


def spend(paths: OrgPaths, agent: str) -> dict[str, Any]:
    """The agent's tokens and cost so far (its CLI's records read first): stored with each experiment it asks
    for, so the ledger says what every experiment cost in model calls. Empty for agents without model calls."""
    refresh(paths, agent)
    total = ledger.usage_totals(paths).get(agent)
    if total is None:
        return {}
    tokens = sum(total[c] for c in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"))
    return {"agent_tokens": tokens, "agent_cost_usd": total["cost_usd"]}
