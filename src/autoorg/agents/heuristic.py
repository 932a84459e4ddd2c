"""`backend: heuristic` — the offline researcher (autoorg.heuristic) in the agent's pane. Needs no LLM, no key."""

from __future__ import annotations

from autoorg.agents import LaunchContext, register
from autoorg.paths import autoorg_command
from autoorg.spec import AgentSpec


class HeuristicBackend:
    name = "heuristic"

    def available(self) -> tuple[bool, str]:
        return True, "offline researcher, no LLM needed"

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        return None

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        return autoorg_command("agent", "--backend", "heuristic")


register(HeuristicBackend())
