"""Hostile files for an inbox, each with the words its quarantine reason must hold (found by fault injection)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

FRONT = "---\nfrom: mallory\nto: alice\nkind: note\nts: '2020-01-01T00:00:00.000000Z'\n"


def _fifo(path: Path, _outside: Path) -> None:
    os.mkfifo(path)


def _huge(path: Path, _outside: Path) -> None:
    """Valid front matter and 8 MB of text: the 64 KiB cap used to be checked only on send."""
    with open(path, "w") as fh:
        fh.write(FRONT + "---\n")
        line = "all work and no play makes jack a dull boy\n"
        fh.write(line * (8 * 1024 * 1024 // len(line)))


def _alias_bomb(path: Path, _outside: Path) -> None:
    """~600 bytes that a YAML loader expanding aliases turns into 10^8 strings."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    path.write_text(FRONT + "\n".join(lines) + "\n---\nboom\n")


def _link_to_dev_zero(path: Path, _outside: Path) -> None:
    os.symlink("/dev/zero", path)


def _link_outside(path: Path, outside: Path) -> None:
    """A well-formed message that lies outside the org, linked in."""
    target = outside / "planted.md"
    target.write_text(FRONT + "---\nplanted from outside\n")
    os.symlink(target, path)


HOSTILE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "huge": (_huge, "over the 256 KiB cap"),
    "alias-bomb": (_alias_bomb, "anchors and aliases"),
    "dev-zero": (_link_to_dev_zero, "a symlink"),
    "outside-link": (_link_outside, "a symlink"),
}


def plant(inbox: Path, kind: str, outside: Path) -> Path:
    """Put one hostile file in inbox, old enough to be quarantined at once; returns its path."""
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"20200101T000000.000000Z-mallory-{kind}.md"
    HOSTILE[kind][0](path, outside)
    old = time.time() - 60
    os.utime(path, (old, old), follow_symlinks=False)
    return path
