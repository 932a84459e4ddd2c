"""The board: board.md with a preamble and `## ` sections the gate and agents edit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoorg.clock import now_iso
from autoorg.comms.files import locked, quarantine, read_comms_text
from autoorg.comms.roster import check_name, check_shared
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths, atomic_write_text

BOARD_SECTIONS = ("Current best", "Recent results", "Posts")
MAX_BOARD_BYTES = 16 * 1024 * 1024  # posts pile up over a long run; a read is bounded all the same
POST_RE = re.compile(r"^- (\S+) \*\*([^*]+)\*\*: (.*)$")


@dataclass(frozen=True)
class BoardPost:
    ts: str  # `2026-11-26T05:09:24Z`
    author: str
    text: str


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
    with locked(paths, "board"):
        path = board_path(paths)
        try:
            text = _board_text(paths)
        except CommsError:
            text = ""  # quarantined: the board starts afresh
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
    check_shared(paths, author, "the board")
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
    """board.md's text ("" when there is none). An unreadable board is quarantined: CommsError says so, and the
    next write starts a fresh one."""
    return _board_text(paths)


def _board_text(paths: OrgPaths) -> str:
    path = board_path(paths)
    try:
        return read_comms_text(path, limit=MAX_BOARD_BYTES)
    except FileNotFoundError:
        return ""
    except (ValueError, OSError) as exc:
        kept = quarantine(paths, path, f"unreadable board: {exc}")
        raise CommsError(f"board.md was unreadable ({exc}); moved to {kept}, the next post starts a new board") \
            from None


def board_posts(text: str, limit: int) -> list[BoardPost]:
    """The last `limit` posts of a board's text (as `read_board` gives it), oldest first."""
    for title, body in reversed(_split_board(text)[1]):
        if title == "Posts":
            posts = [BoardPost(*m.groups()) for m in map(POST_RE.match, body.splitlines()) if m]
            return posts[-limit:] if limit > 0 else []
    return []
