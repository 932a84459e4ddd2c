"""Agent backends: how an agent thinks. One module per backend, each a `Backend`, all found the same way.

The registry reads the entry-point group `autoorg.backends` (importlib.metadata): autoorg's own backends are
registered there in pyproject.toml, exactly as a third-party package registers its own, e.g.

    [project.entry-points."autoorg.backends"]
    mine = "my_package.backend:backend"      # an object implementing Backend, whose name is "mine"

A backend knows the command that runs the agent in its pane, the files that command needs, whether it can run
here, and how to read the agent's model use from the agent's home.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from autoorg.errors import BackendError
from autoorg.paths import OrgPaths
from autoorg.spec import BACKEND_GROUP, AgentSpec, OrgSpec

if TYPE_CHECKING:  # usage.py reads the registry, so it cannot be imported here at run time
    from autoorg.agents.usage import SessionUsage


@dataclass
class LaunchContext:
    """What a backend may use to prepare and launch one agent."""

    paths: OrgPaths
    spec: OrgSpec
    worktree: Path
    env: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str  # what `backend:` says in the org file; the entry point's name

    @property
    def auto_rank(self) -> int | None:
        """Where `auto` puts this backend: ready backends of the lowest rank win, and agents alternate between
        backends that share it (claude and codex); None: `auto` never picks it."""
        ...

    def available(self) -> tuple[bool, str]:
        """Can this backend run here? (ready, why) — used by `auto` and `doctor`."""
        ...

    def details(self) -> dict[str, str]:
        """What `autoorg doctor` adds to the backend's row (binary, version, credentials, dialogs); may be {}."""
        ...

    def check(self, agent: AgentSpec, spec: OrgSpec) -> list[str] | None:
        """Refuse, with a BackendError and before anything is created, an agent that cannot start; return the
        notes `up` and `--dry-run` print about one that starts but may not work (None or [] when none)."""
        ...

    def prepare(self, agent: AgentSpec, ctx: LaunchContext) -> None:
        """Write what the agent needs into its worktree (config, prompts, hooks)."""
        ...

    def command(self, agent: AgentSpec, ctx: LaunchContext) -> str:
        """The shell command run in the agent's pane, from its worktree."""
        ...

    def usage(self, agent_home: Path) -> list[SessionUsage]:
        """The agent's model use, read from its home (`<home>/agents/<agent>/`); [] for backends that keep
        no record there (the SDK loop records its own)."""
        ...


def backends() -> dict[str, Backend]:
    """Every installed backend by name: the objects the entry points of `autoorg.backends` name."""
    return dict(_load_backends(tuple(sys.path)))


@functools.lru_cache(maxsize=4)
def _load_backends(search_path: tuple[str, ...]) -> dict[str, Backend]:
    """Loaded once per import path (`up` asks for every agent's backend; a scan of the metadata takes tens of
    milliseconds), again when sys.path changes (a plugin put on it)."""
    found: dict[str, Backend] = {}
    for entry in importlib.metadata.entry_points(group=BACKEND_GROUP):
        if entry.name in found:
            continue  # the same distribution seen twice on sys.path: the first one wins, as for imports
        try:
            backend = entry.load()
        except (ImportError, AttributeError) as exc:
            raise BackendError(f"backend '{entry.name}' ({entry.value}) cannot be loaded: {exc}") from None
        if getattr(backend, "name", None) != entry.name:
            raise BackendError(f"backend entry point '{entry.name}' ({entry.value}) names an object whose name "
                               f"is {getattr(backend, 'name', None)!r}")
        found[entry.name] = backend
    return found


def get_backend(name: str) -> Backend:
    found = backends()
    if name not in found:
        raise BackendError(f"backend '{name}' is not available in this autoorg "
                           f"(available: {', '.join(sorted(found))})")
    return found[name]


def resolve_auto(index: int = 0) -> tuple[str, str]:
    """The backend `auto` picks for the index-th auto agent, and why. Alternates between ready backends of the
    same rank (claude and codex)."""
    ranked = sorted(((b.auto_rank, name, b) for name, b in backends().items() if b.auto_rank is not None),
                    key=lambda t: (t[0], t[1]))
    ready: list[tuple[int, str, str]] = []
    skipped: list[tuple[str, str]] = []
    for rank, name, backend in ranked:
        ok, why = backend.available()
        if ok:
            ready.append((rank, name, why))
        else:
            skipped.append((name, why))
    if not ready:
        raise BackendError("backend auto found nothing to run: " + "; ".join(f"{n}: {w}" for n, w in skipped))
    best = [r for r in ready if r[0] == ready[0][0]]
    if len(best) > 1:
        _, name, why = best[index % len(best)]
        return name, f"{why} (alternating {' and '.join(n for _, n, _ in best)})"
    _, name, why = ready[0]
    passed = "; ".join(f"{n}: {w}" for n, w in skipped)
    return name, f"{why}" + (f" (skipped {passed})" if passed else "")
