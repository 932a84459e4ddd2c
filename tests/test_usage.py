"""Token accounting: the CLIs' own records read into the ledger, priced, summed per agent, stamped on experiments.

The record formats here are the ones Claude Code 2.1 and Codex 0.169 write; test_e2e_agents checks the same
reading against files the real CLIs wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoorg.agents import claude, codex, homes, usage
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


def claude_line(msg_id: str, out: int, *, model: str = "claude-sonnet-4-5-20250929") -> dict:
    return {"type": "assistant", "sessionId": "s1", "requestId": f"req-{msg_id}",
            "message": {"id": msg_id, "model": model, "role": "assistant", "content": [{"type": "text", "text": "x"}],
                        "usage": {"input_tokens": 100, "cache_creation_input_tokens": 1000,
                                  "cache_read_input_tokens": 5000, "output_tokens": out}}}


def test_claude_transcripts_count_each_message_once(tmp_path: Path) -> None:
    home = tmp_path / "claude"
    # one message written as two content-block lines (the last has the final output count), a second message,
    # a user line, an API-error placeholder, and a torn last line (the CLI is still writing)
    write_jsonl(home / "projects" / "-work-wt" / "s1.jsonl", [
        {"type": "user", "message": {"role": "user", "content": "go"}},
        claude_line("m1", 5), claude_line("m1", 40), claude_line("m2", 60),
        claude_line("m3", 7, model="<synthetic>"),
    ])
    with open(home / "projects" / "-work-wt" / "s1.jsonl", "a") as fh:
        fh.write('{"type": "assistant", "message": {"id": "m4", "usa')
    [s] = claude.sessions(home)
    assert (s.session, s.backend, s.model) == ("claude:s1", "claude", "claude-sonnet-4-5-20250929")
    assert (s.input_tokens, s.cache_write_tokens, s.cached_input_tokens, s.output_tokens, s.requests) == \
        (200, 2000, 10000, 100, 2)
    # $3/M fresh, 1.25x for cache writes, 0.1x for reads, $15/M out
    assert s.cost_usd == pytest.approx((200 * 3 + 2000 * 3.75 + 10000 * 0.3 + 100 * 15) / 1e6)


def test_codex_rollouts_take_the_last_running_total(tmp_path: Path) -> None:
    home = tmp_path / "codex"

    def count(inp: int, cached: int, out: int) -> dict:
        return {"type": "event_msg", "payload": {"type": "token_count", "info": {
            "total_token_usage": {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out,
                                  "reasoning_output_tokens": 0, "total_tokens": inp + out},
            "last_token_usage": {}}}}

    write_jsonl(home / "sessions" / "2026" / "11" / "26" / "rollout-2026-11-26T08-00-00-abc.jsonl", [
        {"type": "session_meta", "payload": {"id": "abc", "cwd": "/w"}},
        {"type": "turn_context", "payload": {"model": "gpt-5-codex", "cwd": "/w"}},
        {"type": "event_msg", "payload": {"type": "token_count", "info": None}},
        count(1000, 0, 50), count(1000, 0, 50), count(3000, 1800, 90),
    ])
    [s] = codex.sessions(home)
    assert (s.session, s.model, s.requests) == ("codex:rollout-2026-11-26T08-00-00-abc", "gpt-5-codex", 2)
    assert (s.input_tokens, s.cached_input_tokens, s.output_tokens) == (1200, 1800, 90)  # Codex counts reads in
    assert s.cost_usd == pytest.approx((1200 * 1.25 + 1800 * 0.125 + 90 * 10) / 1e6)
    assert codex.sessions(tmp_path / "nothing") == []


def test_codex_usage_records_count_a_response_before_its_tools_run(tmp_path: Path) -> None:
    home = tmp_path / "codex"

    def record(response: str, inp: int, out: int, written: int = 0) -> dict:
        running = {"input_tokens": inp, "cached_input_tokens": 0, "cache_write_input_tokens": written,
                   "output_tokens": out, "reasoning_output_tokens": 0, "total_tokens": inp + out}
        return {"type": "token_usage_record", "payload": {"response_id": response, "usage": {},
                                                          "thread_token_usage": running}}

    write_jsonl(home / "sessions" / "2026" / "11" / "26" / "rollout-x.jsonl", [
        {"type": "turn_context", "payload": {"model": "scripted-model"}},
        record("r1", 13234, 67),
        {"type": "response_item", "payload": {"type": "function_call", "name": "exec_command"}},  # tool not done
    ])
    [s] = codex.sessions(home)
    assert (s.input_tokens, s.output_tokens, s.requests, s.cost_usd) == (13234, 67, 1, None)
    with open(home / "sessions" / "2026" / "11" / "26" / "rollout-x.jsonl", "a") as fh:
        fh.write(json.dumps(record("r2", 26742, 113, written=500)) + "\n")
    [s] = codex.sessions(home)
    assert (s.input_tokens, s.cache_write_tokens, s.output_tokens, s.requests) == (26242, 500, 113, 2)


def test_prices_match_model_families_and_unknown_models_have_no_cost() -> None:
    assert usage.price("gpt-5-mini-2025-08-07") == usage.PRICES_PER_MTOK["gpt-5-mini"]  # longest family wins
    assert usage.price("gpt-5") == usage.PRICES_PER_MTOK["gpt-5"]
    assert usage.price("gpt-50") is None and usage.price("scripted-model") is None
    assert usage.SessionUsage("x", "claude", "scripted-model", input_tokens=5).cost_usd is None


def test_the_ledger_sums_sessions_per_agent_and_stamps_experiments(tmp_path: Path) -> None:
    paths = OrgPaths(tmp_path / ".autoorg" / "t")
    paths.home.mkdir(parents=True)
    agent_home = homes.agent_home(paths, "alice")
    write_jsonl(agent_home / "claude" / "projects" / "-w" / "a.jsonl", [claude_line("m1", 10)])
    write_jsonl(agent_home / "claude" / "projects" / "-w" / "b.jsonl", [claude_line("m9", 30)])  # a restart
    usage.refresh(paths, "alice")
    usage.refresh(paths, "alice")  # idempotent: sessions are replaced, not added twice
    usage.record(paths, "bob", [usage.SessionUsage("openai:1", "openai", "scripted-model", 7, 0, 0, 3, 1)])
    totals = ledger.usage_totals(paths)
    assert totals["alice"]["sessions"] == 2 and totals["alice"]["output_tokens"] == 40
    assert totals["alice"]["requests"] == 2 and totals["alice"]["cost_usd"] > 0
    assert totals["bob"]["cost_usd"] is None and totals["bob"]["input_tokens"] == 7
    assert usage.summary(totals["alice"]) == "12k in (10k cached) / 40 out tokens, $0.0117"


    spend = usage.spend(paths, "alice")
    assert spend == {"agent_tokens": 2 * (100 + 1000 + 5000) + 40, "agent_cost_usd": totals["alice"]["cost_usd"]}
    assert usage.spend(paths, "carol") == {}
