"""`backend: heuristic` — the offline researcher (autoorg.agents.researcher) in the agent's pane. No LLM, no key."""

from __future__ import annotations

from pathlib import Path

from autoorg.agents import Backend, LaunchContext
from autoorg.agents.search import STRATEGIES
from autoorg.agents.usage import SessionUsage
from autoorg.errors import BackendError
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
        """The offline researcher's `model:` is its search strategy (agents/search.py). An agent that came here by
        `backend: auto` may carry an LLM's model name: that one is ignored."""
        if agent.backend == "heuristic" and agent.model and agent.model not in STRATEGIES:
            raise BackendError(f"agent '{agent.name}': the offline researcher's model is its search strategy, one "
                               f"of {', '.join(STRATEGIES)}; not '{agent.model}'")
        return []

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        return None

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        self.check(agent, ctx.spec)
        strategy = ["--strategy", agent.model] if agent.model in STRATEGIES else []
        return autoorg_command("agent", "--backend", "heuristic", *strategy)

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return []  # no model calls


backend: Backend = HeuristicBackend()
