"""What an agent's model calls cost: tokens and dollars per agent session, read from the agents' own records.

Each backend reads its own records from the agent's home (`Backend.usage`: Claude Code's transcripts in
claude.py, Codex's rollouts in codex.py); the SDK loop counts each response's usage itself and records it here.

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

from autoorg.agents import backends, homes
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


def jsonl_objects(path: Path) -> Iterator[dict[str, Any]]:
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


def cli_sessions(agent_home: Path) -> list[SessionUsage]:
    """Every session any backend recorded under an agent's folder (`<home>/agents/<agent>/`)."""
    return [s for backend in backends().values() for s in backend.usage(agent_home)]


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
