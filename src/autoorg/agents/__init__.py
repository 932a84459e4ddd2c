"""Agent backends: how an agent thinks. One module per backend, each registering a `Backend` in REGISTRY.

A backend knows the command that runs the agent in its pane and the files that command needs in the worktree.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoorg.errors import BackendError
from autoorg.paths import OrgPaths
from autoorg.spec import AgentSpec, OrgSpec


@dataclass
class LaunchContext:
    """What a backend may use to prepare and launch one agent."""

    paths: OrgPaths
    spec: OrgSpec
    worktree: Path
    env: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """Can this backend run here? (ready, why) — used by `auto` and `doctor`."""
        ...

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        """Write what the agent needs into its worktree (config, prompts, hooks)."""
        ...

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        """The shell command run in the agent's pane, from its worktree."""
        ...


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    REGISTRY[backend.name] = backend
    return backend


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_backend(name: str) -> Backend:
    _load_all()
    if name not in REGISTRY:
        raise BackendError(f"backend '{name}' is not available in this autoorg "
                           f"(available: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


# Preference order for `auto`: interactive CLIs first, then SDK loops, then the offline researcher.
AUTO_ORDER = ("claude", "codex", "anthropic", "openai", "heuristic")


def resolve_auto(index: int = 0) -> tuple[str, str]:
    """The backend `auto` picks for the index-th auto agent, and why. Alternates when two CLIs are ready."""
    _load_all()
    ready: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for name in AUTO_ORDER:
        backend = REGISTRY.get(name)
        if backend is None:
            continue
        ok, why = backend.available()
        (ready if ok else skipped).append((name, why))
    if not ready:
        raise BackendError("backend auto found nothing to run: " + "; ".join(f"{n}: {w}" for n, w in skipped))
    clis = [r for r in ready if r[0] in ("claude", "codex")]
    if len(clis) == 2:
        name, why = clis[index % 2]
        return name, f"{why} (alternating claude and codex)"
    name, why = ready[0]
    passed = "; ".join(f"{n}: {w}" for n, w in skipped)
    return name, f"{why}" + (f" (skipped {passed})" if passed else "")
