"""The org's stop rules (`processes.stop`): how far each rule is from firing, read cheaply from the ledger, and
which rules have fired (`<home>/stop_rules.json`, written and read only here).

A rule with action `stop` that has fired (or whose count is reached now) makes `queue_experiment` refuse; the
daemon's `stop_rules` process records a rule when it fires and tells the agents (or pauses them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from autoorg.clock import now_iso
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.spec import StopRule

FIRED_FILE = "stop_rules.json"
TOKEN_COLUMNS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")


@dataclass(frozen=True)
class RuleProgress:
    """Where one rule stands, for the org or for one agent: `value` of `limit` (crash_rate: a share of the latest
    `window` finished experiments, judged once there are that many)."""

    rule: StopRule
    agent: str | None  # None: the org as a whole
    value: float
    limit: float
    fires: bool

    @property
    def key(self) -> str:
        """Names the rule and whom it counts: fired once per key."""
        return f"{self.rule.name}@{self.agent or 'org'}"

    @property
    def text(self) -> str:
        """`plateau 7/10`, `max_experiments 3/4 (bob)`, `crash_rate 0.6>0.5 of 10`, `max_cost_usd 1.2/5`."""
        who = f" ({self.agent})" if self.agent else ""
        if self.rule.measure == "crash_rate":
            return f"crash_rate {self.value:.2g}{'>' if self.fires else '<='}{self.limit:g} of {self.rule.window}{who}"
        value = f"{self.value:.2f}" if self.rule.measure == "max_cost_usd" else f"{self.value:g}"
        return f"{self.rule.measure} {value}/{self.limit:g}{who}"

    @property
    def closeness(self) -> float:
        """0 far from firing … 1 firing: for the dashboard to show the rules that are close."""
        return min(1.0, self.value / self.limit) if self.limit > 0 else float(self.fires)


@dataclass(frozen=True)
class Fired:
    """A rule that fired: recorded once, kept when its count later drops (a stop stays a stop)."""

    key: str
    rule: str
    action: str
    agent: str | None
    at: str
    why: str


def _finished(row: dict[str, Any]) -> bool:
    verdict = str(row["verdict"])
    return verdict not in ledger.UNFINISHED and not verdict.startswith("cancelled")


def progress(paths: OrgPaths, rules: tuple[StopRule, ...], agents: list[str]) -> list[RuleProgress]:
    """Every rule's progress, per agent where the rule says `per: agent`. Costs three ledger reads."""
    if not rules:
        return []
    rows = ledger.exp_outcomes(paths)
    usage = ledger.usage_totals(paths)
    promoted = [p["ts"] for p in ledger.promotions(paths)]
    last_promotion = max(promoted) if promoted else ""
    by_agent: dict[str | None, list[dict[str, Any]]] = {None: rows}
    for r in rows:
        by_agent.setdefault(r["agent"], []).append(r)
    out = []
    for rule in rules:
        for agent in (agents if rule.per == "agent" else [None]):
            mine = by_agent.get(agent, [])
            if rule.measure == "max_experiments":
                value = float(len(mine))
            elif rule.measure == "max_tokens":
                value = float(sum(sum(int(u[c] or 0) for c in TOKEN_COLUMNS) for name, u in usage.items()
                                  if agent is None or name == agent))
            elif rule.measure == "max_cost_usd":
                value = sum(float(u["cost_usd"] or 0.0) for name, u in usage.items() if agent is None or name == agent)
            elif rule.measure == "plateau":
                value = float(sum(1 for r in mine if _finished(r) and str(r["finished"] or "") > last_promotion))
            else:  # crash_rate
                latest = [r for r in mine if _finished(r)][-rule.window:]
                crashed = sum(1 for r in latest if str(r["verdict"]).startswith("crash"))
                value = crashed / len(latest) if latest else 0.0
                fires = len(latest) >= rule.window and value > rule.limit
                out.append(RuleProgress(rule, agent, value, rule.limit, fires))
                continue
            out.append(RuleProgress(rule, agent, value, rule.limit, value >= rule.limit))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Fired rules


def fired(paths: OrgPaths) -> list[Fired]:
    """The rules that have fired, oldest first (none when the file is missing or unreadable)."""
    try:
        data = json.loads((paths.home / FIRED_FILE).read_text(encoding="utf-8"))
        return [Fired(**item) for item in data["fired"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def record_fired(paths: OrgPaths, found: RuleProgress) -> Fired:
    """Record a rule as fired (the daemon's process is its only caller, one at a time)."""
    record = Fired(key=found.key, rule=found.rule.name, action=found.rule.action, agent=found.agent, at=now_iso(),
                   why=found.text)
    items = [asdict(f) for f in fired(paths) if f.key != found.key] + [asdict(record)]
    atomic_write_text(paths.home / FIRED_FILE, json.dumps({"fired": items}, indent=1) + "\n")
    return record


def refusal(paths: OrgPaths, rules: tuple[StopRule, ...], agent: str) -> str | None:
    """Why the org accepts no new experiment from this agent (a `stop` rule fired for the org or for it), or None.
    Experiment counts are checked now, not only when the daemon last looked: the next submission past a limit is
    refused even between the daemon's ticks."""
    for f in fired(paths):
        if f.action == "stop" and f.agent in (None, agent):
            return f"the org stopped queuing experiments at {f.at[:19]}Z: stop rule {f.rule} fired ({f.why})"
    counted = tuple(r for r in rules if r.action == "stop" and r.measure == "max_experiments")
    for found in progress(paths, counted, [agent]):
        if found.fires:
            return f"the org stopped queuing experiments: stop rule {found.rule.name} reached ({found.text})"
    return None
