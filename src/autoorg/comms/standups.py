"""Standup notes, one file per agent per day."""

from __future__ import annotations

import re
from pathlib import Path

from autoorg.clock import now_iso
from autoorg.comms.files import locked
from autoorg.comms.messages import MAX_BODY_BYTES
from autoorg.comms.roster import check_name
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths, atomic_write_text

# ---------------------------------------------------------------------------------------------------------------
# Standups


def standup_path(paths: OrgPaths, agent: str, date: str | None = None) -> Path:
    date = date or now_iso()[:10]
    return paths.comms / "standups" / date / f"{check_name(agent, 'agent')}.md"


def write_standup(paths: OrgPaths, agent: str, text: str) -> Path:
    """Append a timestamped note to today's `standups/<date>/<agent>.md` (one section per standup)."""
    if not text.strip():
        raise CommsError("empty standup note")
    if len(text.encode("utf-8")) > MAX_BODY_BYTES:
        raise CommsError(f"standup note is over the {MAX_BODY_BYTES // 1024} KiB cap")
    path = standup_path(paths, agent)
    with locked(paths, f"standup-{agent}"):
        old = path.read_text(encoding="utf-8") if path.exists() else f"# Standups of {agent}, {path.parent.name}\n"
        atomic_write_text(path, f"{old.rstrip()}\n\n## {now_iso()}\n\n{text.strip()}\n")
    return path


def standup_notes_since(paths: OrgPaths, agent: str, since: str) -> str | None:
    """The agent's standup notes written at or after `since` (ISO), joined; None when there is none."""
    notes = []
    dates = {since[:10], now_iso()[:10]}
    for date in sorted(dates):
        path = standup_path(paths, agent, date)
        if not path.exists():
            continue
        for block in re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.M)[1:]:
            stamp, _, text = block.partition("\n")
            if stamp.strip() >= since:
                notes.append(text.strip())
    return "\n\n".join(notes) if notes else None
