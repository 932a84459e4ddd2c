"""Agent status files: what each agent is doing, held states, why a message will wait."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autoorg.clock import now_iso
from autoorg.comms.files import is_young, locked, quarantine, read_comms_text, replace_state_file
from autoorg.comms.roster import check_name
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths
from autoorg.state import org_status_word

STATES = ("starting", "working", "idle", "waiting", "running", "human", "paused", "crashed", "stopped")
HELD_STATES = ("human", "paused")  # states only `take`/`release` (and pause/resume) change; hooks cannot


# ---------------------------------------------------------------------------------------------------------------
# Status


def status_path(paths: OrgPaths, agent: str) -> Path:
    return paths.comms / "status" / f"{check_name(agent, 'agent')}.json"


def read_status(paths: OrgPaths, agent: str) -> dict[str, Any] | None:
    """`{"agent", "state", "since", "detail"}` (plus `reported` while held), or None when there is none yet."""
    path = status_path(paths, agent)
    try:
        data = json.loads(read_comms_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if not is_young(path):
            quarantine(paths, path, f"unreadable status file: {exc}")
        return None
    if not isinstance(data, dict) or data.get("state") not in STATES:
        if not is_young(path):
            quarantine(paths, path, f"not a status (needs a state among {', '.join(STATES)})")
        return None
    return data


def _check_state(state: str) -> None:
    if state not in STATES:
        raise CommsError(f"unknown state '{state}' (states: {', '.join(STATES)})")


def _write_status_unlocked(paths: OrgPaths, agent: str, old: dict[str, Any] | None, state: str, detail: str,
                           reported: str | None = None) -> dict[str, Any]:
    since = old["since"] if old and old.get("state") == state and old.get("since") else now_iso()
    new: dict[str, Any] = {"agent": agent, "state": state, "since": since, "detail": detail}
    if reported:
        new["reported"] = reported
    replace_state_file(status_path(paths, agent), json.dumps(new) + "\n")
    return new


def write_status(paths: OrgPaths, agent: str, state: str, detail: str = "") -> dict[str, Any]:
    """Set an agent's state (`since` changes only when the state does). Used by take/release and the daemon."""
    _check_state(state)
    with locked(paths, f"status-{check_name(agent, 'agent')}"):
        return _write_status_unlocked(paths, agent, read_status(paths, agent), state, detail)


def report_status(paths: OrgPaths, agent: str, state: str, detail: str = "") -> dict[str, Any]:
    """What an agent's hooks report. While the agent is held (`human`, `paused`) the held state stays and the
    report is kept as `reported`, so `release` can restore it."""
    _check_state(state)
    with locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if old and old["state"] in HELD_STATES and state not in HELD_STATES:
            return _write_status_unlocked(paths, agent, old, old["state"], old.get("detail", ""), reported=state)
        return _write_status_unlocked(paths, agent, old, state, detail)


def swap_status(paths: OrgPaths, agent: str, expect: str, state: str, detail: str = "", *,
                held_too: bool = False) -> bool:
    """Set state only if the agent is in `expect` now (compare-and-swap under the status lock). With `held_too`,
    a held agent (`human`, `paused`) stays held and the swap applies to what it last reported, which `release`
    restores (a run ending during a hold)."""
    _check_state(state)
    with locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if (held_too and old and old["state"] in HELD_STATES and state not in HELD_STATES
                and old.get("reported") == expect):
            _write_status_unlocked(paths, agent, old, old["state"], old.get("detail", ""), reported=state)
            return True
        if not old or old["state"] != expect:
            return False
        _write_status_unlocked(paths, agent, old, state, detail)
        return True


def hold(paths: OrgPaths, agent: str, state: str, detail: str = "") -> dict[str, Any]:
    """Hold an agent in `human` or `paused`; what it was doing is kept as `reported`."""
    with locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        before = old.get("reported") if old and old["state"] in HELD_STATES else (old or {}).get("state")
        return _write_status_unlocked(paths, agent, old, state, detail, reported=before or "idle")


def unhold(paths: OrgPaths, agent: str) -> dict[str, Any]:
    """End a hold: back to the state the agent last reported (idle when it reported nothing)."""
    with locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if not old or old["state"] not in HELD_STATES:
            return old or _write_status_unlocked(paths, agent, None, "idle", "")
        back = old.get("reported") or "idle"
        return _write_status_unlocked(paths, agent, old, back, "released" if back == "idle" else "")



def not_running_reason(paths: OrgPaths, agent: str) -> str | None:
    """Why a message to this agent will wait (org down, agent stopped, crashed or held); None when it won't."""
    if agent == "human":
        return None
    org_state = org_status_word(paths)
    if org_state not in (None, "running"):
        return f"stopped (org {paths.tag} is {org_state})"
    status = read_status(paths, agent)
    if status and status["state"] in ("stopped", "crashed", *HELD_STATES):
        return status["state"]
    return None
