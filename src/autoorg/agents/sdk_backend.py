"""`backend: anthropic` and `backend: openai`: autoorg's own tool loop (agents/sdk.py) in the agent's pane,
started as `autoorg agent --backend anthropic|openai` with the role prompt in `<agent home>/role.md`."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
from pathlib import Path

from autoorg.agents import Backend, LaunchContext, homes
from autoorg.agents.usage import SessionUsage
from autoorg.paths import atomic_write_text, autoorg_command
from autoorg.spec import AgentSpec, OrgSpec


class SdkBackend:
    """The SDK loop on one SDK, with the key it needs."""

    def __init__(self, name: str, *, key_var: str, sdk: str, auto_rank: int) -> None:
        self.name, self.key_var, self.sdk, self.auto_rank = name, key_var, sdk, auto_rank

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec(self.sdk) is None:
            return False, f"the {self.sdk} SDK is not installed (pip install {self.sdk})"
        if not os.environ.get(self.key_var):
            return False, f"{self.key_var} is not set"
        return True, f"{self.sdk} SDK with {self.key_var}"

    def details(self) -> dict[str, str]:
        try:
            version = importlib.metadata.version(self.sdk)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return {"binary": f"{self.sdk} SDK (built-in loop)", "version": version,
                "credentials": self.key_var if os.environ.get(self.key_var) else "none",
                "dialogs": "none (autoorg's own loop)"}

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str]:
        return []  # a missing SDK or key is said by the loop, in the agent's pane

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        folder = homes.agent_home(ctx.paths, agent.name)
        atomic_write_text(folder / "role.md", homes.role_prompt(agent, ctx))
        homes.write_env_file(folder / "env", homes.forwarded_env())

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        folder = homes.agent_home(ctx.paths, agent.name)
        argv = shlex.split(autoorg_command("agent", "--backend", self.name, "--kickoff", homes.kickoff(agent, ctx)))
        return homes.launch_line(folder / "env", argv)

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        return []  # the loop records its own use into the ledger as it goes (sdk.py)


# Key and endpoint: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL; OPENAI_API_KEY, OPENAI_BASE_URL (the Responses API).
anthropic_backend: Backend = SdkBackend("anthropic", key_var="ANTHROPIC_API_KEY", sdk="anthropic", auto_rank=2)
openai_backend: Backend = SdkBackend("openai", key_var="OPENAI_API_KEY", sdk="openai", auto_rank=3)
