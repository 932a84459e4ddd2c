"""Messages: sent once, hard-linked into every recipient's inbox, read by moving to read/."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autoorg.clock import iso, now_iso
from autoorg.comms.files import (
    is_young,
    parse_front_matter,
    quarantine,
    read_comms_text,
    render_front_matter,
    write_new,
)
from autoorg.comms.roster import NAME_RE, SYSTEM_SENDERS, check_name, check_shared, resolve_recipients, roster
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths

KINDS = ("note", "directive", "result", "standup", "idea", "system")
MAX_BODY_BYTES = 64 * 1024


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
    if any(r != "human" for r in recipients):
        check_shared(paths, sender, "messaging other agents")
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
    *written, _outbox = write_new([*(paths.comms / "inbox" / r for r in recipients),
                                    paths.comms / "outbox" / sender], stem, text)
    return written


def parse_message(path: Path, *, read: bool = False) -> Message:
    """Parse a message file. Raises ValueError with the reason when it is not a valid message."""
    meta, body = parse_front_matter(read_comms_text(path))
    missing = [k for k in ("from", "to", "kind", "ts") if k not in meta]
    if missing:
        raise ValueError(f"front matter lacks {', '.join(missing)}")
    kind = str(meta.pop("kind"))
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}'")
    if not NAME_RE.match(str(meta["from"])):  # it is typed into panes: a plain name, never control characters
        raise ValueError(f"bad sender {str(meta['from'])[:40]!r}")
    ts = meta.pop("ts")
    ts = iso(ts) if isinstance(ts, datetime) else str(ts)
    return Message(path=path, sender=str(meta.pop("from")), to=str(meta.pop("to")), kind=kind, ts=ts,
                   body=body.strip("\n"), re=opt_str(meta.pop("re", None)), exp=opt_str(meta.pop("exp", None)),
                   extra=meta, read=read)


def opt_str(value: Any) -> str | None:
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
            if not is_young(f):
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
