"""`backend: command` — any command in the agent's pane and worktree. Bring your own agent."""

from __future__ import annotations

from autoorg.agents import LaunchContext, register
from autoorg.errors import BackendError
from autoorg.spec import AgentSpec


class CommandBackend:
    name = "command"

    def available(self) -> tuple[bool, str]:
        return False, "runs only when a command is given (backend: command)"

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        return None

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        if not agent.command:
            raise BackendError(f"agent '{agent.name}' has backend command but no command")
        return agent.command


register(CommandBackend())
