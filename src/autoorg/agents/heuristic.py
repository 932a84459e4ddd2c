"""`backend: heuristic` — the offline researcher (autoorg.agents.researcher) in the agent's pane. No LLM, no key."""

from __future__ import annotations

from pathlib import Path

from autoorg.agents import Backend, LaunchContext
from autoorg.agents.usage import SessionUsage
from autoorg.paths import autoorg_command
from autoorg.spec import AgentSpec, OrgSpec


class HeuristicBackend:
    name = "heuristic"
    auto_rank = 4  # last: it needs nothing, so it is always ready

    def available(self) -> tuple[bool, str]:
        return True, "offline researcher, no LLM needed"

    def details(self) -> dict[str, str]:
        return {}

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str]:
        return []

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        return None

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        return autoorg_command("agent", "--backend", "heuristic")

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return []  # no model calls


backend: Backend = HeuristicBackend()
