"""`backend: command` — any command in the agent's pane and worktree. Bring your own agent."""

from __future__ import annotations

from pathlib import Path

from autoorg.agents import Backend, LaunchContext
from autoorg.agents.usage import SessionUsage
from autoorg.errors import BackendError
from autoorg.spec import AgentSpec, OrgSpec


class CommandBackend:
    name = "command"
    auto_rank = None  # runs only what the org names

    def available(self) -> tuple[bool, str]:
        return False, "runs only when a command is given (backend: command)"

    def details(self) -> dict[str, str]:
        return {}

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str]:
        return []  # the spec already refused an agent without a command

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        return None

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        if not agent.command:
            raise BackendError(f"agent '{agent.name}' has backend command but no command")
        return agent.command

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return []


backend: Backend = CommandBackend()
