"""Comms files: exclusive create, locks, front matter, bounded reads, quarantine."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from autoorg.clock import now_iso
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths, atomic_write_text

QUARANTINE_AFTER_S = 1.0  # a bad file younger than this may still be being written by a non-atomic writer
MAX_FILE_BYTES = 256 * 1024  # bodies are capped at 64 KiB on send; front matter and a hand edit fit easily


# ---------------------------------------------------------------------------------------------------------------
# Files: exclusive create, locks, front matter


def write_new(folders: list[Path], stem: str, text: str) -> list[Path]:
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
def locked(paths: OrgPaths, name: str) -> Iterator[None]:
    """An exclusive lock across processes (flock on `locks/comms/<name>.lock`); released if the holder dies."""
    folder = paths.locks / "comms"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _PlainDumper(yaml.SafeDumper):
    """Writes a shared value twice instead of as an anchor and alias, which comms files never hold."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class _PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: expanding them lets a 600-byte front matter become 30 MB."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError("YAML anchors and aliases (&name, *name) are not allowed in comms files")
        return super().compose_node(parent, index)


def render_front_matter(meta: dict[str, Any], body: str) -> str:
    head = yaml.dump(meta, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=1000).rstrip("\n")
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
        meta = yaml.load(text[4:end + 1], Loader=_PlainLoader)  # a SafeLoader that refuses aliases
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping")
    return meta, text[end + 5:]


def read_comms_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A comms file as text. Anything but a regular file of at most `limit` bytes of UTF-8 text raises ValueError
    saying why: a symlink (never followed), a FIFO or device (opened without blocking, never read), a huge file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symlink (comms files are plain files, never links)") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file ({_file_kind(mode)})")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"over the {limit // 1024} KiB cap for a comms file")
    if b"\x00" in data:
        raise ValueError("binary content (NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


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
        rel = (file.parent.resolve() / file.name).relative_to(paths.comms.resolve())  # a link itself, not its target
        base = "__".join(rel.parts)
    except ValueError:
        base = file.name
    target = folder / base
    n = 2
    while os.path.lexists(target):  # a quarantined dangling link exists too
        target = folder / f"{base}.{n}"
        n += 1
    os.replace(file, target)
    atomic_write_text(target.with_name(target.name + ".reason"),
                      f"{now_iso()} {file}\n{reason.strip()}\n")
    return target


def is_young(path: Path) -> bool:
    try:
        return time.time() - path.lstat().st_mtime < QUARANTINE_AFTER_S
    except FileNotFoundError:
        return True
