"""Hot reload of the org's code: when a prompt or skill of a running org changes (the daemon looks every
RELOAD_EVERY_S; `autoorg org reload` looks at once), the new version is recorded, each agent's home gets the new
files (role prompt, skills) and each agent a `system` message with the diff, which reaches it at its next turn
boundary (the doorbell rings only an idle agent). New ledger rows carry the new org-code hash (queueing resolves it),
so results before and after stay apart; `org show` lists the history."""

from __future__ import annotations

import fcntl
import os

from autoorg import comms, orgcode
from autoorg.agents import LaunchContext, homes
from autoorg.clock import now_iso
from autoorg.errors import AutoorgError, Say
from autoorg.experiments import resolve_org_code
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec

RELOAD_EVERY_S = 2.0
MAX_DIFF_CHARS = 12_000  # a message body stays far below comms' limit; the rest is one command away


def reload_org_code(paths: OrgPaths, spec: OrgSpec, *, log: Say, why: str = "reload") -> tuple[str, str] | None:
    """If the org's code resolves to another version than its agents were given: record it, refresh the agents'
    homes, send each agent the diff, note it in the history. Returns (old, new) hashes, or None when unchanged.
    One caller at a time (the daemon and `org reload`): `locks/orgcode.lock`."""
    paths.locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.locks / "orgcode.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code = resolve_org_code(paths.repo, spec, paths.org_yaml)
        new = code.hash
        old = orgcode.given(paths.orgcode)
        if old == new:
            return None
        orgcode.record(code, paths.orgcode)
        if old is None:  # an org started before versions were given: what it runs now is where it starts
            orgcode.add_history(paths.orgcode, new, now_iso(), "first seen")
            return None
        diff = _bounded_diff(paths, old, new)
        for agent in spec.agents:
            try:
                homes.refresh_home(agent, LaunchContext(paths=paths, spec=spec, worktree=paths.worktree(agent.name)))
            except AutoorgError as exc:  # a prompt that no longer resolves: the agent keeps its old files
                log(f"reload: {agent.name}'s home not refreshed: {exc}")
        body = (f"The org's code changed ({old} -> {new}); it applies from now on, and your new "
                f"experiments carry org code {new}. What changed:\n\n```diff\n{diff}```")
        for name in spec.names:
            comms.send_message(paths, sender="autoorg", to=name, kind="system", body=body)
        orgcode.add_history(paths.orgcode, new, now_iso(), why)
        log(f"org code {old} -> {new} ({why}): {len(spec.names)} agents told")
        return old, new
    finally:
        os.close(fd)


def _bounded_diff(paths: OrgPaths, old: str, new: str) -> str:
    try:
        text = orgcode.diff_versions(orgcode.load_version(paths.orgcode, old),
                                     orgcode.load_version(paths.orgcode, new))
    except AutoorgError as exc:
        return f"(no diff: {exc})\n"
    if len(text) > MAX_DIFF_CHARS:
        cut = text.rfind("\n", 0, MAX_DIFF_CHARS) + 1
        text = text[:cut] + f"... ({len(text) - cut} more characters: `autoorg org diff {old} {new}`)\n"
    return text or "(no difference in the files' text)\n"


class OrgReload:
    """The daemon's reload process: `tick` (every RELOAD_EVERY_S) resolves the org's code and reloads it when it
    changed."""

    every_s = RELOAD_EVERY_S

    def __init__(self, paths: OrgPaths, spec: OrgSpec, *, log: Say) -> None:
        self.paths = paths
        self.spec = spec
        self.log = log

    def tick(self) -> None:
        reload_org_code(self.paths, self.spec, log=self.log, why="edited")

    def close(self) -> None:
        pass
