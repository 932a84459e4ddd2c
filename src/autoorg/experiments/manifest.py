"""The protected files' manifest: their content hashes when the org started, checked on every run's tree.

`<home>/protected.json`, taken by `up` from the commit the program branch starts at (and by the first run of an
org that predates it, from the org's base); this module is its only reader and writer:

    {"version": 1, "head": "<sha>", "taken": "<iso time>", "files": {"<path>": "<sha256 hex>"}}

A run's exported tree is checked against it before the run (a difference voids the run before it starts) and
again after it (a run that rewrote its copy of a protected file is void: its number came from doctored code).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from autoorg import workspace
from autoorg.clock import now_iso
from autoorg.errors import StateError
from autoorg.experiments.policy import is_protected
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.spec import TaskSpec

VERSION = 1


@dataclass(frozen=True)
class Manifest:
    head: str  # the program head it was taken from: the last head the gate vouches for before any promotion
    taken: str  # ISO time
    files: dict[str, str]  # path → sha256 of its content (of its target, for a link)


def manifest_path(paths: OrgPaths) -> Path:
    return paths.home / "protected.json"


def take_manifest(repo: Path, rev: str, task: TaskSpec) -> Manifest:
    blobs = workspace.tree_blobs(repo, rev, lambda path: is_protected(task, path))
    return Manifest(head=rev, taken=now_iso(),
                    files={path: hashlib.sha256(data).hexdigest() for path, data in sorted(blobs.items())})


def write_manifest(paths: OrgPaths, manifest: Manifest) -> None:
    atomic_write_text(manifest_path(paths), json.dumps({"version": VERSION, "head": manifest.head,
                                                        "taken": manifest.taken, "files": manifest.files},
                                                       indent=2) + "\n")


def read_manifest(paths: OrgPaths) -> Manifest | None:
    """The org's manifest, or None when it has none (an org started before manifests existed)."""
    path = manifest_path(paths)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{path} is damaged ({exc}); restore it or start the org again") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("files"), dict):
        raise StateError(f"{path} is not a version-{VERSION} manifest of protected files")
    return Manifest(head=str(data["head"]), taken=str(data["taken"]),
                    files={str(k): str(v) for k, v in data["files"].items()})


def org_manifest(paths: OrgPaths, repo: Path, base: str, task: TaskSpec) -> Manifest:
    """The org's manifest; one is taken from base (and kept) when the org has none yet."""
    manifest = read_manifest(paths)
    if manifest is None:
        manifest = take_manifest(repo, base, task)
        write_manifest(paths, manifest)
    return manifest


def protected_changes(manifest: Manifest, folder: Path) -> list[str]:
    """How folder's protected files differ from the manifest: `missing X` or `X` (its content differs)."""
    changes = []
    for path, digest in manifest.files.items():
        file = folder / path
        try:
            data = os.fsencode(os.readlink(file)) if file.is_symlink() else file.read_bytes()
        except OSError:
            changes.append(f"missing {path}")
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            changes.append(path)
    return changes
