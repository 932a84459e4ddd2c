"""The idea queue."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoorg.clock import now_iso
from autoorg.comms.files import (
    is_young,
    locked,
    parse_front_matter,
    quarantine,
    read_comms_text,
    render_front_matter,
)
from autoorg.comms.messages import MAX_BODY_BYTES, opt_str
from autoorg.comms.roster import check_name, check_shared
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths, atomic_write_text

# ---------------------------------------------------------------------------------------------------------------
# Ideas: queue/<id>.md → claimed/<agent>-<id>.md → done/<id>.md


IDEA_STATES = ("queue", "claimed", "done")


@dataclass
class Idea:
    id: str
    title: str
    author: str
    state: str
    body: str
    path: Path
    claimed_by: str | None = None
    note: str | None = None


def ideas_dir(paths: OrgPaths, state: str) -> Path:
    if state not in IDEA_STATES:
        raise CommsError(f"unknown idea state '{state}' (states: {', '.join(IDEA_STATES)})")
    return paths.comms / "ideas" / state


def _idea_id_of(name: str) -> str | None:
    m = re.search(r"(?:^|-)(\d+)\.md$", name)
    return m[1] if m else None


def add_idea(paths: OrgPaths, author: str, title: str, body: str = "") -> str:
    """Queue an idea; returns its id (a number, unique in the org)."""
    idea_id = add_idea_unless(paths, author, title, body)
    assert idea_id is not None
    return idea_id


def add_idea_unless(paths: OrgPaths, author: str, title: str, body: str = "",
                    similar: Callable[[str, str], bool] | None = None) -> str | None:
    """Queue an idea unless `similar(title, other)` holds for an idea already queued, claimed or done (None then);
    checked and added under one lock, so two agents topping the queue up at once never both queue it."""
    check_name(author, "author")
    check_shared(paths, author, "the idea queue")
    title = " ".join(title.split())
    if not title:
        raise CommsError("an idea needs a title")
    if len(title) > 200:
        raise CommsError(f"idea title is {len(title)} characters; keep it under 200 and put details in the body")
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise CommsError(f"idea body is over the {MAX_BODY_BYTES // 1024} KiB cap")
    with locked(paths, "ideas"):
        if similar is not None and any(similar(title, other.title)
                                       for state in IDEA_STATES for other in list_ideas(paths, state)):
            return None
        ids = [int(i) for s in IDEA_STATES if ideas_dir(paths, s).is_dir()
               for n in os.listdir(ideas_dir(paths, s)) if (i := _idea_id_of(n))]
        idea_id = str(max(ids, default=0) + 1)
        meta = {"id": idea_id, "title": title, "author": author, "ts": now_iso()}
        atomic_write_text(ideas_dir(paths, "queue") / f"{idea_id}.md", render_front_matter(meta, body or title))
    return idea_id


def _parse_idea(path: Path, state: str) -> Idea:
    meta, body = parse_front_matter(read_comms_text(path))
    idea_id = str(meta.get("id") or _idea_id_of(path.name) or "")
    if not idea_id:
        raise ValueError("idea has no id")
    return Idea(id=idea_id, title=str(meta.get("title", "")), author=str(meta.get("author", "?")), state=state,
                body=body.strip("\n"), path=path, claimed_by=opt_str(meta.get("claimed_by")),
                note=opt_str(meta.get("note")))


def list_ideas(paths: OrgPaths, state: str = "queue") -> list[Idea]:
    """Ideas in one state (queue, claimed, done), lowest id first. Bad files are quarantined."""
    folder = ideas_dir(paths, state)
    out = []
    for name in (os.listdir(folder) if folder.is_dir() else []):
        if not name.endswith(".md") or name.startswith("."):
            continue
        try:
            out.append(_parse_idea(folder / name, state))
        except FileNotFoundError:
            continue
        except (ValueError, OSError) as exc:
            if not is_young(folder / name):
                quarantine(paths, folder / name, f"unreadable idea: {exc}")
    return sorted(out, key=lambda i: int(i.id) if i.id.isdigit() else 0)


def _who_has(paths: OrgPaths, idea_id: str) -> tuple[str, str] | None:
    """(state, agent) for an idea that is claimed or done; None when it is in neither."""
    claimed = ideas_dir(paths, "claimed")
    for name in (os.listdir(claimed) if claimed.is_dir() else []):
        if name.endswith(f"-{idea_id}.md"):
            return "claimed", name[: -len(f"-{idea_id}.md")]
    done = ideas_dir(paths, "done") / f"{idea_id}.md"
    if done.exists():
        try:
            return "done", _parse_idea(done, "done").claimed_by or "?"
        except (ValueError, OSError):
            return "done", "?"
    return None


def _check_idea_id(idea_id: str) -> str:
    idea_id = str(idea_id).strip().lstrip("#")
    if not idea_id.isdigit():
        raise CommsError(f"bad idea id {idea_id!r}: ideas are numbered (see `autoorg idea list`)")
    return str(int(idea_id))


def claim_idea(paths: OrgPaths, agent: str, idea_id: str) -> Path:
    """Claim a queued idea by atomic rename; exactly one claimer wins, the others get a CommsError."""
    check_name(agent, "agent")
    idea_id = _check_idea_id(idea_id)
    source = ideas_dir(paths, "queue") / f"{idea_id}.md"
    target = ideas_dir(paths, "claimed") / f"{agent}-{idea_id}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        holder = _who_has(paths, idea_id)
        if holder is None:
            raise CommsError(f"no idea {idea_id} in the queue (see `autoorg idea list`)") from None
        state, who = holder
        raise CommsError(f"idea {idea_id} is already {'claimed' if state == 'claimed' else 'done'} by {who}") \
            from None
    try:
        meta, body = parse_front_matter(read_comms_text(target))
    except ValueError:
        return target  # claimed all the same; the file keeps what it had
    meta.update({"claimed_by": agent, "claimed_at": now_iso()})
    atomic_write_text(target, render_front_matter(meta, body))
    return target


def finish_idea(paths: OrgPaths, agent: str, idea_id: str, note: str = "") -> Path:
    """Move an idea the agent claimed to done/, with a closing note."""
    check_name(agent, "agent")
    idea_id = _check_idea_id(idea_id)
    source = ideas_dir(paths, "claimed") / f"{agent}-{idea_id}.md"
    if not source.exists():
        holder = _who_has(paths, idea_id)
        if holder is None:
            raise CommsError(f"idea {idea_id} is not claimed; claim it first with `autoorg idea claim {idea_id}`")
        state, who = holder
        raise CommsError(f"idea {idea_id} is {state} by {who}, not by {agent}")
    try:
        meta, body = parse_front_matter(read_comms_text(source))
    except ValueError as exc:
        raise CommsError(f"idea {idea_id} is unreadable: {exc}") from None
    meta.update({"claimed_by": agent, "done_at": now_iso(), "note": " ".join(note.split())})
    target = ideas_dir(paths, "done") / f"{idea_id}.md"
    atomic_write_text(target, render_front_matter(meta, body))
    source.unlink(missing_ok=True)
    return target
