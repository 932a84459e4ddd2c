"""state.json: the only reader and writer of an org's state file (what `up` built, where its agents run).

Everything else gets an `OrgState`. The file keeps the keys documented in docs/architecture.md plus `version` and
`runtime`; a file written by a newer autoorg is refused rather than half understood.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from autoorg.errors import StateError
from autoorg.paths import OrgPaths, atomic_write_text

STATE_VERSION = 1
RUNTIMES = ("tmux", "headless")


@dataclass
class ProcessRecord:
    """A headless process: its pid and its start time (clock ticks since boot, from /proc) so a reused pid is
    never mistaken for it."""

    pid: int
    start: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: Any) -> ProcessRecord | None:
        if not isinstance(data, dict):
            return None
        return cls(pid=int(data["pid"]), start=int(data["start"]))


@dataclass
class AgentState:
    backend: str
    branch: str
    worktree: str
    slots: list[str] = field(default_factory=list)
    backend_reason: str = ""
    pane: str = ""  # tmux: the agent's pane (%N); "" headless
    process: ProcessRecord | None = None  # headless: the agent's process; None under tmux

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pane": self.pane, "backend": self.backend, "backend_reason": self.backend_reason,
                                "branch": self.branch, "worktree": self.worktree, "slots": list(self.slots)}
        if self.process is not None:
            data["process"] = self.process.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        return cls(backend=data["backend"], branch=data["branch"], worktree=data["worktree"],
                   slots=list(data.get("slots", [])), backend_reason=data.get("backend_reason", ""),
                   pane=data.get("pane", ""), process=ProcessRecord.from_json(data.get("process")))


@dataclass
class OrgState:
    """What `up` built: the org's branches and worktrees, and where its agents and services run."""

    tag: str
    repo: str
    program_branch: str
    base: str
    task: str
    created: str
    agents: dict[str, AgentState]
    status: str = "running"  # running | stopping (`down` under way) | stopped
    runtime: str = "tmux"  # tmux | headless
    socket: str | None = None  # tmux only
    session: str = ""  # tmux: the session's name; "" headless
    session_id: str = ""
    windows: dict[str, str] = field(default_factory=dict)  # tmux: window name -> @id
    services: dict[str, str] = field(default_factory=dict)  # tmux: dash, daemon -> %id
    service_processes: dict[str, ProcessRecord] = field(default_factory=dict)  # headless: daemon -> its process
    resumed: str | None = None
    stopped: str | None = None
    version: int = STATE_VERSION

    @property
    def headless(self) -> bool:
        return self.runtime == "headless"

    def agent(self, name: str) -> AgentState:
        info = self.agents.get(name)
        if info is None:
            raise StateError(f"no agent '{name}' in org '{self.tag}' (agents: {', '.join(self.agents)})")
        return info

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version, "tag": self.tag, "status": self.status, "runtime": self.runtime,
            "repo": self.repo, "socket": self.socket, "session": self.session, "session_id": self.session_id,
            "windows": self.windows, "services": self.services, "created": self.created,
            "program_branch": self.program_branch, "base": self.base, "task": self.task,
            "agents": {name: a.to_json() for name, a in self.agents.items()},
        }
        if self.service_processes:
            data["service_processes"] = {name: p.to_json() for name, p in self.service_processes.items()}
        for key in ("resumed", "stopped"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrgState:
        version = data.get("version", 0)  # files from before versioning are version 0: the same keys
        if not isinstance(version, int) or version > STATE_VERSION:
            raise ValueError(f"written by a newer autoorg (version {version}; this one reads up to "
                             f"{STATE_VERSION}): upgrade autoorg")
        runtime = data.get("runtime", "tmux")
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}")
        return cls(
            tag=data["tag"], repo=data["repo"], program_branch=data["program_branch"], base=data.get("base", ""),
            task=data.get("task", ""), created=data.get("created", ""),
            agents={name: AgentState.from_json(info) for name, info in data["agents"].items()},
            status=data.get("status", "running"), runtime=runtime, socket=data.get("socket") or None,
            session=data.get("session", ""), session_id=data.get("session_id", ""),
            windows=dict(data.get("windows") or {}), services=dict(data.get("services") or {}),
            service_processes={name: p for name, raw in (data.get("service_processes") or {}).items()
                               if (p := ProcessRecord.from_json(raw)) is not None},
            resumed=data.get("resumed"), stopped=data.get("stopped"), version=STATE_VERSION,
        )


def read_state(paths: OrgPaths) -> OrgState:
    """The org's state; StateError when it is missing, damaged, or from a newer autoorg."""
    try:
        data = json.loads(paths.state_json.read_text())
    except FileNotFoundError:
        raise StateError(f"no org state at {paths.home}") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {paths.state_json}: {exc}") from None
    if not isinstance(data, dict):
        raise StateError(f"cannot read {paths.state_json}: not a JSON object")
    try:
        return OrgState.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StateError(f"cannot read {paths.state_json}: {what}") from None


def org_status_word(paths: OrgPaths) -> str | None:
    """`running`/`stopping`/`stopped` as state.json says, or None when there is no readable state (never raises)."""
    try:
        return read_state(paths).status
    except StateError:
        return None


def write_state(paths: OrgPaths, state: OrgState) -> None:
    atomic_write_text(paths.state_json, json.dumps(state.to_json(), indent=2) + "\n")


@contextmanager
def _locked(paths: OrgPaths) -> Iterator[None]:
    paths.locks.mkdir(parents=True, exist_ok=True)
    with open(paths.locks / "state.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def update_state(paths: OrgPaths, change: Callable[[OrgState], None]) -> OrgState:
    """Read, change and write state.json under a lock, so the daemon (respawning an agent) and the CLI (`down`)
    never lose each other's writes."""
    with _locked(paths):
        state = read_state(paths)
        change(state)
        write_state(paths, state)
        return state
