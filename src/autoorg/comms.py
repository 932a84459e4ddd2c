"""The comms/ protocol: messages, status files, the board, the idea queue, standups, quarantine.

Everything is a plain file under `<home>/comms/`, written to a temporary name in the same folder and then linked
or renamed into place, so a reader never sees half a file. Files that cannot be parsed are moved to
`comms/quarantine/` with the reason next to them, never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from autoorg.errors import AutoorgError, CommsError
from autoorg.paths import OrgPaths, atomic_write_text

KINDS = ("note", "directive", "result", "standup", "idea", "system")
STATES = ("starting", "working", "idle", "waiting", "running", "human", "paused", "crashed", "stopped")
HELD_STATES = ("human", "paused")  # states only `take`/`release` (and pause/resume) change; hooks cannot
SYSTEM_SENDERS = ("autoorg", "gate", "human", "daemon", "system")
MAX_BODY_BYTES = 64 * 1024
QUARANTINE_AFTER_S = 1.0  # a bad file younger than this may still be being written by a non-atomic writer
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
BOARD_SECTIONS = ("Current best", "Recent results", "Posts")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------------
# Files: exclusive create, locks, front matter


def _write_new(folders: list[Path], stem: str, text: str) -> list[Path]:
    """Write `<stem>.md` into each folder without ever replacing an existing file (`<stem>-2.md`, ... on a clash).

    The content is written (and synced) once to a temporary file, then hard-linked into each folder: every name
    appears complete, `link` fails instead of overwriting when two writers pick the same name, and a message to
    all 64 agents costs one write, not 64.
    """
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folders[0])
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return [_link_free(tmp, folder, stem) for folder in folders]
    finally:
        Path(tmp).unlink(missing_ok=True)


def _link_free(source: str, folder: Path, stem: str) -> Path:
    for n in range(1, 1000):
        target = folder / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            continue
    raise CommsError(f"cannot find a free name for {stem}.md in {folder}")


def replace_state_file(path: Path, text: str) -> None:
    """Atomically replace a small state file (status, delivery cursor) without fsync: it describes live
    processes, which a machine crash ends anyway, and a sync on a busy disk would put tens of milliseconds on
    every doorbell. Messages, ideas and notes use `atomic_write_text` (synced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _locked(paths: OrgPaths, name: str) -> Iterator[None]:
    """An exclusive lock across processes (flock on `locks/comms/<name>.lock`); released if the holder dies."""
    folder = paths.locks / "comms"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def render_front_matter(meta: dict[str, Any], body: str) -> str:
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")
    return f"---\n{head}\n---\n{body.rstrip()}\n"


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """`---\\n<yaml mapping>\\n---\\n<body>` → (meta, body). Raises ValueError saying what is wrong."""
    if not text.startswith("---\n"):
        raise ValueError("no front matter (the file must start with a '---' line)")
    end = text.find("\n---\n", 3)
    if end < 0:
        if text.endswith("\n---"):
            end = len(text) - 4
        else:
            raise ValueError("front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load(text[4:end + 1])
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping")
    return meta, text[end + 5:]


def _read_text(path: Path) -> str:
    """A comms file as text; binary junk raises ValueError."""
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError("binary content (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


# ---------------------------------------------------------------------------------------------------------------
# Quarantine


def quarantine(paths: OrgPaths, file: Path, reason: str) -> Path:
    """Move an unreadable comms file to `comms/quarantine/` with `<name>.reason` next to it. Never deletes.

    The quarantined name keeps where the file came from: `inbox/alice/x.md` → `inbox__alice__x.md`.
    """
    file = Path(file)
    folder = paths.comms / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rel = file.resolve().relative_to(paths.comms.resolve())
        base = "__".join(rel.parts)
    except ValueError:
        base = file.name
    target = folder / base
    n = 2
    while target.exists():
        target = folder / f"{base}.{n}"
        n += 1
    os.replace(file, target)
    atomic_write_text(target.with_name(target.name + ".reason"),
                      f"{now_iso()} {file}\n{reason.strip()}\n")
    return target


def _is_young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < QUARANTINE_AFTER_S
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------------------------------------------------------
# Who is in the org


@dataclass(frozen=True)
class Roster:
    """Agent names and their roles, from the org's resolved org.yaml (or state.json when that is missing)."""

    role_of: dict[str, str]  # agent -> role

    @property
    def agents(self) -> list[str]:
        return list(self.role_of)

    def with_role(self, role: str) -> list[str]:
        return [a for a, r in self.role_of.items() if r == role]


_roster_cache: dict[Path, tuple[float, Roster]] = {}


def roster(paths: OrgPaths) -> Roster:
    """The org's agents and roles (cached on org.yaml's mtime)."""
    from autoorg.spec import load_org

    try:
        mtime = paths.org_yaml.stat().st_mtime
    except FileNotFoundError:
        mtime = -1.0
    cached = _roster_cache.get(paths.home)
    if cached and cached[0] == mtime:
        return cached[1]
    if mtime >= 0:
        spec = load_org(str(paths.org_yaml))
        result = Roster({a.name: a.role for a in spec.agents})
    else:
        try:
            state = json.loads(paths.state_json.read_text())
        except (OSError, ValueError):
            raise CommsError(f"no org at {paths.home} (no org.yaml or state.json)") from None
        result = Roster({name: "researcher" for name in state.get("agents", {})})
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


# ---------------------------------------------------------------------------------------------------------------
# Messages


@dataclass
class Message:
    path: Path
    sender: str
    to: str
    kind: str
    ts: str
    body: str
    re: str | None = None
    exp: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    read: bool = False

    @property
    def id(self) -> str:
        """The file name without `.md`: unique within an inbox, ordered by time."""
        return self.path.stem

    @property
    def name(self) -> str:
        return self.path.name


def _slug(text: str, fallback: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:32].rstrip("-") or fallback


def _file_ts(iso: str) -> str:
    """`2025-01-02T03:04:05.123456Z` → `20250102T030405.123456Z`: sorts by time, no colons in file names."""
    return iso.replace("-", "").replace(":", "")


def send_message(paths: OrgPaths, *, sender: str, to: str, kind: str, body: str, re: str | None = None,
                 exp: str | None = None, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write one message to every recipient's inbox (and a copy to the sender's outbox). Returns the inbox files.

    `to` is an agent, a role, `all` (everyone but the sender) or `human`. Raises CommsError on a bad recipient,
    sender or kind, an empty body, or a body over MAX_BODY_BYTES.
    """
    check_name(sender, "sender")
    if sender not in SYSTEM_SENDERS and sender not in roster(paths).role_of:
        raise CommsError(f"unknown sender '{sender}' (an agent of the org, or one of {', '.join(SYSTEM_SENDERS)})")
    if kind not in KINDS:
        raise CommsError(f"unknown message kind '{kind}' (kinds: {', '.join(KINDS)})")
    if not isinstance(body, str) or not body.strip():
        raise CommsError("empty message: nothing to send")
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise CommsError(f"message is {size} bytes, over the {MAX_BODY_BYTES // 1024} KiB cap; put the details "
                         "in a file in your worktree and send its path")
    if "\x00" in body:
        raise CommsError("message body contains NUL bytes; send text")
    recipients = resolve_recipients(paths, to, sender)
    ts = now_iso()
    meta: dict[str, Any] = {"from": sender, "to": to, "kind": kind, "ts": ts}
    if re:
        meta["re"] = str(re)
    if exp:
        meta["exp"] = str(exp)
    for key, value in (extra or {}).items():
        if key in ("from", "to", "kind", "ts", "re", "exp"):
            raise CommsError(f"extra key '{key}' would overwrite a standard front matter key")
        meta[str(key)] = value
    text = render_front_matter(meta, body)
    stem = f"{_file_ts(ts)}-{sender}-{_slug(body.strip().splitlines()[0], kind)}"
    *written, _outbox = _write_new([*(paths.comms / "inbox" / r for r in recipients),
                                    paths.comms / "outbox" / sender], stem, text)
    return written


def parse_message(path: Path, *, read: bool = False) -> Message:
    """Parse a message file. Raises ValueError with the reason when it is not a valid message."""
    meta, body = parse_front_matter(_read_text(path))
    missing = [k for k in ("from", "to", "kind", "ts") if k not in meta]
    if missing:
        raise ValueError(f"front matter lacks {', '.join(missing)}")
    kind = str(meta.pop("kind"))
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}'")
    if not NAME_RE.match(str(meta["from"])):  # it is typed into panes: a plain name, never control characters
        raise ValueError(f"bad sender {str(meta['from'])[:40]!r}")
    ts = meta.pop("ts")
    ts = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(ts, datetime) else str(ts)
    return Message(path=path, sender=str(meta.pop("from")), to=str(meta.pop("to")), kind=kind, ts=ts,
                   body=body.strip("\n"), re=_opt_str(meta.pop("re", None)), exp=_opt_str(meta.pop("exp", None)),
                   extra=meta, read=read)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def inbox_dir(paths: OrgPaths, agent: str) -> Path:
    return paths.comms / "inbox" / check_name(agent, "agent")


def unread_files(paths: OrgPaths, agent: str) -> list[Path]:
    """Unread message files of an agent, oldest first (names sort by time). Cheap: no parsing."""
    folder = inbox_dir(paths, agent)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".md") and not n.startswith("."))
    except FileNotFoundError:
        return []
    return [folder / n for n in names]


def load_messages(paths: OrgPaths, files: list[Path], *, read: bool = False) -> list[Message]:
    """Parse message files; bad ones are quarantined (once old enough not to be mid-write), missing ones skipped."""
    out = []
    for f in files:
        try:
            out.append(parse_message(f, read=read))
        except FileNotFoundError:
            continue
        except (ValueError, OSError) as exc:
            if not _is_young(f):
                quarantine(paths, f, f"unreadable message: {exc}")
    return out


def read_inbox(paths: OrgPaths, agent: str, *, include_read: bool = False) -> list[Message]:
    """An agent's messages, oldest first: unread ones, plus those already read when include_read."""
    messages = []
    if include_read:
        folder = inbox_dir(paths, agent) / "read"
        names = sorted(n for n in os.listdir(folder) if n.endswith(".md")) if folder.is_dir() else []
        messages += load_messages(paths, [folder / n for n in names], read=True)
    messages += load_messages(paths, unread_files(paths, agent))
    return sorted(messages, key=lambda m: (m.ts, m.name))


def mark_read(paths: OrgPaths, agent: str, messages: list[Message]) -> None:
    """Record messages as read by moving them to `inbox/<agent>/read/` (idempotent)."""
    folder = inbox_dir(paths, agent) / "read"
    folder.mkdir(parents=True, exist_ok=True)
    for m in messages:
        if m.read:
            continue
        with contextlib.suppress(FileNotFoundError):  # already read by another reader
            os.replace(m.path, folder / m.path.name)
        m.read = True
        m.path = folder / m.path.name


# ---------------------------------------------------------------------------------------------------------------
# Status


def status_path(paths: OrgPaths, agent: str) -> Path:
    return paths.comms / "status" / f"{check_name(agent, 'agent')}.json"


def read_status(paths: OrgPaths, agent: str) -> dict[str, Any] | None:
    """`{"agent", "state", "since", "detail"}` (plus `reported` while held), or None when there is none yet."""
    path = status_path(paths, agent)
    try:
        data = json.loads(_read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if not _is_young(path):
            quarantine(paths, path, f"unreadable status file: {exc}")
        return None
    if not isinstance(data, dict) or data.get("state") not in STATES:
        if not _is_young(path):
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
    with _locked(paths, f"status-{check_name(agent, 'agent')}"):
        return _write_status_unlocked(paths, agent, read_status(paths, agent), state, detail)


def report_status(paths: OrgPaths, agent: str, state: str, detail: str = "") -> dict[str, Any]:
    """What an agent's hooks report. While the agent is held (`human`, `paused`) the held state stays and the
    report is kept as `reported`, so `release` can restore it."""
    _check_state(state)
    with _locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if old and old["state"] in HELD_STATES and state not in HELD_STATES:
            return _write_status_unlocked(paths, agent, old, old["state"], old.get("detail", ""), reported=state)
        return _write_status_unlocked(paths, agent, old, state, detail)


def swap_status(paths: OrgPaths, agent: str, expect: str, state: str, detail: str = "") -> bool:
    """Set state only if the agent is in `expect` now (compare-and-swap under the status lock)."""
    _check_state(state)
    with _locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if not old or old["state"] != expect:
            return False
        _write_status_unlocked(paths, agent, old, state, detail)
        return True


def hold(paths: OrgPaths, agent: str, state: str, detail: str = "") -> dict[str, Any]:
    """Hold an agent in `human` or `paused`; what it was doing is kept as `reported`."""
    with _locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        before = old.get("reported") if old and old["state"] in HELD_STATES else (old or {}).get("state")
        return _write_status_unlocked(paths, agent, old, state, detail, reported=before or "idle")


def unhold(paths: OrgPaths, agent: str) -> dict[str, Any]:
    """End a hold: back to the state the agent last reported (idle when it reported nothing)."""
    with _locked(paths, f"status-{check_name(agent, 'agent')}"):
        old = read_status(paths, agent)
        if not old or old["state"] not in HELD_STATES:
            return old or _write_status_unlocked(paths, agent, None, "idle", "")
        back = old.get("reported") or "idle"
        return _write_status_unlocked(paths, agent, old, back, "released" if back == "idle" else "")


# ---------------------------------------------------------------------------------------------------------------
# Board


def board_path(paths: OrgPaths) -> Path:
    return paths.comms / "board.md"


def _split_board(text: str) -> tuple[str, list[tuple[str, str]]]:
    """board.md → (preamble, [(section title, section body)]) on `## ` headings."""
    preamble, sections = [], []
    current: list[str] | None = None
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                sections.append((title, "\n".join(current).strip("\n")))
            title, current = line[3:].strip(), []
        elif current is None:
            preamble.append(line)
        else:
            current.append(line)
    if current is not None:
        sections.append((title, "\n".join(current).strip("\n")))
    return "\n".join(preamble).strip("\n"), sections


def _join_board(preamble: str, sections: list[tuple[str, str]]) -> str:
    parts = [preamble.strip("\n")] if preamble.strip() else []
    for title, body in sections:
        parts.append(f"## {title}\n\n{body.strip()}" if body.strip() else f"## {title}")
    return "\n\n".join(parts) + "\n"


def _edit_board(paths: OrgPaths, section: str, edit: Any) -> None:
    with _locked(paths, "board"):
        path = board_path(paths)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        preamble, sections = _split_board(text)
        if not text:
            preamble = f"# Board of org {paths.tag}\n\nWritten by autoorg; post with `autoorg board post`."
            sections = [(s, "") for s in BOARD_SECTIONS]
        titles = [t for t, _ in sections]
        if section not in titles:
            sections.append((section, ""))
            titles.append(section)
        i = titles.index(section)
        sections[i] = (section, edit(sections[i][1]))
        atomic_write_text(path, _join_board(preamble, sections))


def post_board(paths: OrgPaths, author: str, text: str) -> str:
    """Append a timestamped one-line post to the board's Posts section; returns the line."""
    check_name(author, "author")
    one_line = " ".join(text.split())
    if not one_line:
        raise CommsError("empty post: nothing to put on the board")
    if len(one_line) > 2000:
        raise CommsError(f"a board post is one line of at most 2000 characters (this one has {len(one_line)})")
    line = f"- {now_iso()[:19]}Z **{author}**: {one_line}"
    _edit_board(paths, "Posts", lambda body: f"{body.rstrip()}\n{line}".strip("\n"))
    return line


def update_board(paths: OrgPaths, section: str, markdown: str) -> None:
    """Replace a named section of the board (created when missing), e.g. "Current best"."""
    if not section.strip() or "\n" in section:
        raise CommsError(f"bad board section name {section!r}")
    _edit_board(paths, section.strip(), lambda _old: markdown)


def read_board(paths: OrgPaths) -> str:
    path = board_path(paths)
    return path.read_text(encoding="utf-8") if path.exists() else ""


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
    check_name(author, "author")
    title = " ".join(title.split())
    if not title:
        raise CommsError("an idea needs a title")
    if len(title) > 200:
        raise CommsError(f"idea title is {len(title)} characters; keep it under 200 and put details in the body")
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise CommsError(f"idea body is over the {MAX_BODY_BYTES // 1024} KiB cap")
    with _locked(paths, "ideas"):
        ids = [int(i) for s in IDEA_STATES if ideas_dir(paths, s).is_dir()
               for n in os.listdir(ideas_dir(paths, s)) if (i := _idea_id_of(n))]
        idea_id = str(max(ids, default=0) + 1)
        meta = {"id": idea_id, "title": title, "author": author, "ts": now_iso()}
        atomic_write_text(ideas_dir(paths, "queue") / f"{idea_id}.md", render_front_matter(meta, body or title))
    return idea_id


def _parse_idea(path: Path, state: str) -> Idea:
    meta, body = parse_front_matter(_read_text(path))
    idea_id = str(meta.get("id") or _idea_id_of(path.name) or "")
    if not idea_id:
        raise ValueError("idea has no id")
    return Idea(id=idea_id, title=str(meta.get("title", "")), author=str(meta.get("author", "?")), state=state,
                body=body.strip("\n"), path=path, claimed_by=_opt_str(meta.get("claimed_by")),
                note=_opt_str(meta.get("note")))


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
            if not _is_young(folder / name):
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
        meta, body = parse_front_matter(_read_text(target))
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
        meta, body = parse_front_matter(_read_text(source))
    except ValueError as exc:
        raise CommsError(f"idea {idea_id} is unreadable: {exc}") from None
    meta.update({"claimed_by": agent, "done_at": now_iso(), "note": " ".join(note.split())})
    target = ideas_dir(paths, "done") / f"{idea_id}.md"
    atomic_write_text(target, render_front_matter(meta, body))
    source.unlink(missing_ok=True)
    return target


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
    with _locked(paths, f"standup-{agent}"):
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


def not_running_reason(paths: OrgPaths, agent: str) -> str | None:
    """Why a message to this agent will wait (org down, agent stopped, crashed or held); None when it won't."""
    if agent == "human":
        return None
    try:
        org_state = json.loads(paths.state_json.read_text()).get("status")
    except (OSError, ValueError):
        org_state = None
    if org_state not in (None, "running"):
        return f"stopped (org {paths.tag} is {org_state})"
    status = read_status(paths, agent)
    if status and status["state"] in ("stopped", "crashed", *HELD_STATES):
        return status["state"]
    return None
