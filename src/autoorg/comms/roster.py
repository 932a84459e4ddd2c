"""Who is in the org: names, roles, recipients, who is acting."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autoorg.errors import AutoorgError, CommsError, StateError
from autoorg.paths import OrgPaths
from autoorg.spec.org import NAME_RE, load_org
from autoorg.state import read_state

SYSTEM_SENDERS = ("autoorg", "gate", "human", "daemon", "system")


# ---------------------------------------------------------------------------------------------------------------
# Who is in the org


@dataclass(frozen=True)
class Roster:
    """Agent names and their roles, from the org's resolved org.yaml (or state.json when that is missing)."""

    role_of: dict[str, str]  # agent -> role
    shared: bool = True  # processes.comms.shared: false keeps agents from talking to each other

    @property
    def agents(self) -> list[str]:
        return list(self.role_of)

    def with_role(self, role: str) -> list[str]:
        return [a for a, r in self.role_of.items() if r == role]


_roster_cache: dict[Path, tuple[float, Roster]] = {}


def roster(paths: OrgPaths) -> Roster:
    """The org's agents and roles (cached on org.yaml's mtime)."""
    try:
        mtime = paths.org_yaml.stat().st_mtime
    except FileNotFoundError:
        mtime = -1.0
    cached = _roster_cache.get(paths.home)
    if cached and cached[0] == mtime:
        return cached[1]
    if mtime >= 0:
        spec = load_org(str(paths.org_yaml))
        result = Roster({a.name: a.role for a in spec.agents}, shared=spec.processes.comms.shared)
    else:
        try:
            state = read_state(paths)
        except StateError:
            raise CommsError(f"no org at {paths.home} (no org.yaml or state.json)") from None
        result = Roster({name: "researcher" for name in state.agents})
    _roster_cache[paths.home] = (mtime, result)
    return result


def check_name(name: str, what: str = "name") -> str:
    """A name that becomes a folder or file name: no paths, no dots, no surprises."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CommsError(f"bad {what} {name!r}: use a plain name like 'alice' (lowercase letters, digits, - or _)")
    return name


def resolve_recipients(paths: OrgPaths, to: str, sender: str) -> list[str]:
    """`all` (everyone but the sender), a role (every agent with it), an agent, or `human` → inbox names."""
    if not isinstance(to, str) or not to:
        raise CommsError("no recipient given")
    check_name(to, "recipient")
    org = roster(paths)
    if to == "all":
        found = [a for a in org.agents if a != sender]
        if not found:
            raise CommsError("no one else is in the org to send to")
        return found
    if to == "human" or to in org.role_of:
        return [to]
    by_role = org.with_role(to)
    if by_role:
        return [a for a in by_role if a != sender] or by_role
    roles = sorted(set(org.role_of.values()))
    raise CommsError(f"unknown recipient '{to}' (agents: {', '.join(org.agents)}; roles: {', '.join(roles)}; "
                     "or all, human)")


def check_shared(paths: OrgPaths, author: str, what: str) -> None:
    """In an org whose agents work alone (`processes: comms: {shared: false}`), an agent may not reach the others
    through `what` (the board, the idea queue, a message); people and the gate still may."""
    try:
        org = roster(paths)
    except CommsError:  # no org here (comms used on their own): nothing to keep apart
        return
    if not org.shared and author in org.role_of:
        raise CommsError(f"{what} is off in this org: its agents work independently, sharing only the ledger "
                         "(processes.comms.shared: false); message human if you need a person")


def human_or_agent() -> str:
    """Who is acting: `AUTOORG_AGENT` in an agent's pane, else `human`."""
    agent = os.environ.get("AUTOORG_AGENT")
    if agent:
        try:
            return check_name(agent, "AUTOORG_AGENT")
        except AutoorgError:
            raise CommsError(f"AUTOORG_AGENT={agent!r} is not an agent name") from None
    return "human"


def known_agent(paths: OrgPaths, name: str) -> str:
    """name, checked to be an agent of the org."""
    check_name(name, "agent name")
    agents = roster(paths).agents
    if name not in agents:
        raise CommsError(f"no agent '{name}' in org '{paths.tag}' (agents: {', '.join(agents)})")
    return name
