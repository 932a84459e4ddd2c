"""Which environment variables are secrets: model keys and tokens reach only the agent process that needs them
(through its env file), never the daemon, the dashboard, a command agent, an experiment worker or a run."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Credentials by their name: the model vendors' own variables, and the usual words for a secret
_SECRET = re.compile(r"^(ANTHROPIC_|OPENAI_|CLAUDE_CODE_|CODEX_)|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH",
                     re.IGNORECASE)
NOT_SECRET = {"CLAUDE_CONFIG_DIR", "CODEX_HOME"}  # where a CLI keeps its config, not a credential


def is_secret(name: str) -> bool:
    return name not in NOT_SECRET and _SECRET.search(name) is not None


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """env less every variable named like a credential."""
    return {k: v for k, v in env.items() if not is_secret(k)}
