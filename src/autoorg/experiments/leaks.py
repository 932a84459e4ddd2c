"""Evaluation-only data carried into a run's tree: an agent's pane is not sealed, so it could copy the validation
tokens into its commit and train on them there. A run whose commit added or changed a file that holds a copy of a
task's `hidden` file (the whole file, or any slice of it longer than `slice_limit` bytes) is void: its number would be
measured on data it trained on.

The check is on bytes. A copy re-encoded (compressed, base64, re-tokenized from the corpus's text) is out of its
reach; the gate's held-out split is what shows that kind of leak (a val gain the held-out split does not share).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from autoorg import workspace

WINDOW = 64  # bytes of a hidden file that identify it
MAX_INDEX = 1_000_000  # windows kept per hidden file (a larger file is indexed at a wider stride)
MAX_SCAN = 8 * 2**20  # bytes of changed files scanned per run (beyond this, whole-file hashes only)


@functools.lru_cache(maxsize=16)
def _index(path: str, size: int, mtime_ns: int) -> tuple[str, int, frozenset[int]]:
    """(sha256, stride, hashes of the WINDOW-byte slices at every stride-th offset) of a hidden file."""
    data = Path(path).read_bytes()
    stride = max(8, -(-len(data) // MAX_INDEX))
    windows = frozenset(hash(data[i:i + WINDOW]) for i in range(0, len(data) - WINDOW + 1, stride))
    return hashlib.sha256(data).hexdigest(), stride, windows


def _index_of(hidden: Path) -> tuple[str, int, frozenset[int]]:
    stat = hidden.stat()
    return _index(str(hidden), stat.st_size, stat.st_mtime_ns)


def slice_limit(hidden: Path) -> int:
    """The longest slice of `hidden` a file may hold unnoticed (its index's stride + WINDOW - 2 bytes)."""
    return _index_of(hidden)[1] + WINDOW - 2


def carries(data: bytes, hidden: Path, whole_only: bool = False) -> bool:
    """Does data hold hidden's bytes: the whole file, or (unless whole_only) a slice longer than
    slice_limit(hidden)?"""
    digest, _, windows = _index_of(hidden)
    if hashlib.sha256(data).hexdigest() == digest:
        return True
    return not whole_only and any(hash(data[i:i + WINDOW]) in windows for i in range(len(data) - WINDOW + 1))


def carried(repo: Path, base: str, commit: str, tree: Path, hidden: tuple[Path, ...]) -> list[str]:
    """`<file> holds <hidden file>` for each file the commit added or changed since base (read from tree, its
    export) that carries one of the hidden files; [] when none does. Past MAX_SCAN bytes, whole copies only."""
    files = [path for path in hidden if path.is_file() and path.stat().st_size > 0]
    if not files:
        return []
    found, scanned = [], 0
    for rel in workspace.changed_paths(repo, base, commit):
        path = tree / rel
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        scanned += len(data)
        found += [f"{rel} holds {hidden_file.name}" for hidden_file in files
                  if carries(data, hidden_file, whole_only=scanned > MAX_SCAN)]
    return found
