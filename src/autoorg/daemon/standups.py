"""Standups (`processes: {standup: {every: 30m}}`): ask every working agent for a note, then digest the notes to
the chief, or the board when there is none. Their schedule is kept in `<home>/daemon/standup.json`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autoorg import clock, comms
from autoorg.errors import Say
from autoorg.paths import OrgPaths, atomic_write_text

STANDUP_REQUEST = ("Standup: in a few lines, what you tried since the last standup, what you learned (with exp "
                   "ids) and what you will try next; send it with `autoorg standup \"...\"`.")
CHECK_EVERY_S = 5.0


class Standups:
    """The daemon's standup process: `tick` (every CHECK_EVERY_S) opens a round when one is due and closes it when
    every note is in or its time is up."""

    every_s = CHECK_EVERY_S

    def __init__(self, paths: OrgPaths, agents: list[str], every: float, *, log: Say) -> None:
        self.paths = paths
        self.agents = agents
        self.every = every
        self.log = log

    def close(self) -> None:
        pass

    def tick(self) -> None:
        """Request standup notes every `processes.standup.every`; digest them to the chief, or the board."""
        every = self.every
        state_path = self.paths.home / "daemon" / "standup.json"
        state = _read_json(state_path) or {}
        now = datetime.now(UTC)
        if "next_due" not in state:
            state["next_due"] = _iso(now + timedelta(seconds=every))
            atomic_write_text(state_path, json.dumps(state))
            return
        open_round = state.get("open")
        if open_round:
            notes = {a: comms.standup_notes_since(self.paths, a, open_round["since"]) for a in open_round["agents"]}
            if all(notes.values()) or now >= clock.parse_iso(open_round["close_at"]):
                self._digest(open_round["since"], notes)
                state["open"] = None
                atomic_write_text(state_path, json.dumps(state))
        if now >= clock.parse_iso(state["next_due"]) and not state.get("open"):
            asked = [a for a in self.agents
                     if (comms.read_status(self.paths, a) or {}).get("state") not in ("stopped", "crashed")]
            since = clock.now_iso()
            for agent in asked:
                comms.send_message(self.paths, sender="autoorg", to=agent, kind="standup", body=STANDUP_REQUEST)
            state["open"] = {"since": since, "agents": asked,
                             "close_at": _iso(now + timedelta(seconds=min(every / 2, 600)))}
            state["next_due"] = _iso(now + timedelta(seconds=every))
            atomic_write_text(state_path, json.dumps(state))
            self.log(f"standup requested from {len(asked)} agents")

    def _digest(self, since: str, notes: dict[str, str | None]) -> None:
        lines = [f"Standup digest ({since[:16].replace('T', ' ')} UTC)", ""]
        for agent, note in notes.items():
            lines += [f"### {agent}", note or "(no note)", ""]
        digest = "\n".join(lines).strip()
        chiefs = comms.roster(self.paths).with_role("chief")
        if chiefs:
            comms.send_message(self.paths, sender="autoorg", to="chief", kind="standup", body=digest)
            self.log(f"standup digest sent to {', '.join(chiefs)}")
        else:
            comms.update_board(self.paths, "Standup", digest)
            self.log("standup digest posted to the board")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
