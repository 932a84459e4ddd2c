"""Which environment variables are secrets: model keys and tokens reach only the agent process that needs them
(through its env file), never the daemon, the dashboard, a command agent, an experiment worker or a run. And
whether this interpreter is one autoorg declares it supports."""

from __future__ import annotations

import importlib.metadata
import re
import sys
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


def required_python() -> str | None:
    """The Python range this autoorg declares (pyproject's `requires-python`, from the installed metadata)."""
    try:
        return importlib.metadata.metadata("autoorg")["Requires-Python"]
    except importlib.metadata.PackageNotFoundError:
        return None


def python_problem(version: tuple[int, ...] = tuple(sys.version_info[:3]),
                   requires: str | None = None) -> str | None:
    """Why this interpreter is older than the declared minimum (`>=X.Y[.Z]`), or None when it is not."""
    requires = requires if requires is not None else required_python()
    found = re.search(r">=\s*(\d+(?:\.\d+)*)", requires or "")
    if found is None:
        return None
    minimum = tuple(int(part) for part in found.group(1).split("."))
    if tuple(version[:len(minimum)]) >= minimum:
        return None
    return (f"autoorg needs Python {found.group(1)} or newer (requires-python {requires}); this is Python "
            f"{'.'.join(map(str, version))}: run it from a venv made with a newer python3")
