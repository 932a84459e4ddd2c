"""The org's own code (role prompts, skills, topologies, the resolved org.yaml): where each file resolves from,
and which version of it an org runs.

A file resolves from the first root that has it: the research repo's `org/`, the research repo itself (`prompts/`,
`skills/`, `topologies/`), the user's folder (`paths.user_dir()`), then the library bundled with autoorg. The
version of an org's code is a hash over exactly the files resolved; each version an org ran is kept under
`<home>/orgcode/<hash>/` (a copy of its files and `manifest.json`, written and read only here) so two versions can
be compared after edits.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.resources
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autoorg.errors import AutoorgError
from autoorg.paths import atomic_write_text, user_dir

FALLBACK_PROMPT = "prompts/researcher.md"  # a role of the org's own with no prompt: (role defaults: spec.org)
SKILLS_DIR = "skills"
TOPOLOGIES_DIR = "topologies"
LIBRARY_FOLDERS = ("prompts", SKILLS_DIR, TOPOLOGIES_DIR)  # what setup.py bundles and `autoorg init` copies
REPO_ORG_DIR = "org"
LIBRARY = "library"  # the bundled library's folder inside the installed package (see setup.py)
ORG_YAML = "org.yaml"
MANIFEST = "manifest.json"
HISTORY = "history.json"  # which version the org's agents were given, and when (up, then each reload)


class OrgCodeError(AutoorgError):
    """A version of the org's code that is not recorded, or a hash prefix that names several."""


def source_root() -> Path:
    """autoorg's own checkout (when running from one): its prompts/, skills/ and the project-local CLIs in
    .npm-prefix/."""
    return Path(__file__).resolve().parents[3]


def bundled_root() -> Path:
    """The library bundled with autoorg: package data in an installed wheel, the checkout's top level otherwise
    (an editable install or PYTHONPATH=src, where prompts/ and skills/ are the files people edit)."""
    packaged = Path(str(importlib.resources.files("autoorg"))) / LIBRARY
    return packaged if packaged.is_dir() else source_root()


def roots(repo: Path) -> list[tuple[str, Path]]:
    """(origin, folder) in resolution order."""
    return [("repo", Path(repo) / REPO_ORG_DIR), ("repo", Path(repo)), ("user", user_dir()),
            ("bundled", bundled_root())]


# ---------------------------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class CodeFile:
    """One resolved file: its name in the org's code (`prompts/researcher.md`), where it came from, its path."""

    name: str
    origin: str  # repo | user | bundled | org (the org's resolved org.yaml)
    path: Path

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class OrgCode:
    """Exactly the files an org's code resolved to."""

    files: tuple[CodeFile, ...]

    @property
    def hash(self) -> str:
        """The version: 12 hex digits over each file's name and content (not its origin)."""
        digest = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            digest.update(f.name.encode() + b"\0" + f.path.read_bytes() + b"\0")
        return digest.hexdigest()[:12]


def prompt_path(prompt: str | None) -> str:
    """The prompt file of an agent, relative to a root: its `prompt:` (the spec fills in its role's), else the
    researcher's."""
    return prompt or FALLBACK_PROMPT


def topology_path(name: str) -> str:
    return f"{TOPOLOGIES_DIR}/{name}.yaml"


def topology_names(repo: Path) -> list[str]:
    """Every topology any root offers (`topologies/<name>.yaml`), sorted."""
    names = {f.stem for _, root in roots(repo) if (root / TOPOLOGIES_DIR).is_dir()
             for f in (root / TOPOLOGIES_DIR).glob("*.yaml") if f.is_file()}
    return sorted(names)


def find_file(repo: Path, relative: str) -> CodeFile | None:
    """A file of the org's code (a prompt) from the first root that has it."""
    for origin, root in roots(repo):
        candidate = root / relative
        if candidate.is_file():
            return CodeFile(relative, origin, candidate)
    return None


def skill_dirs(repo: Path) -> list[Path]:
    """`skills/<name>/` folders holding a SKILL.md; a skill's name resolves like a file (the first root wins)."""
    found: dict[str, Path] = {}
    for _, root in roots(repo):
        folder = root / SKILLS_DIR
        for skill in sorted(folder.iterdir()) if folder.is_dir() else []:
            if (skill / "SKILL.md").is_file():
                found.setdefault(skill.name, skill)
    return [found[name] for name in sorted(found)]


def resolve(repo: Path, prompts: Iterable[str], org_yaml: Path | None = None) -> OrgCode:
    """The org's code: the given prompts, every skill's files, and the org's resolved org.yaml."""
    files: dict[str, CodeFile] = {}
    for relative in prompts:
        found = find_file(repo, relative)
        if found is not None:
            files[relative] = found
    origin_of = {str(root): origin for origin, root in roots(repo)}
    for skill in skill_dirs(repo):
        origin = origin_of.get(str(skill.parent.parent), "repo")
        for f in sorted(p for p in skill.rglob("*") if p.is_file()):
            name = f"{SKILLS_DIR}/{skill.name}/{f.relative_to(skill).as_posix()}"
            files[name] = CodeFile(name, origin, f)
    if org_yaml is not None and org_yaml.is_file():
        files[ORG_YAML] = CodeFile(ORG_YAML, "org", org_yaml)
    return OrgCode(tuple(files.values()))


# ---------------------------------------------------------------------------------------------------------------
# Versions kept under the org's home


def record(code: OrgCode, versions: Path) -> str:
    """Keep a copy of this version's files under versions/<hash>/ (once); returns the hash."""
    version = code.hash
    dest = versions / version
    if (dest / MANIFEST).is_file():
        return version
    tmp = versions / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for f in code.files:
        target = tmp / "files" / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, target)
    manifest = {"hash": version, "files": [{"name": f.name, "origin": f.origin, "path": str(f.path), "sha": f.sha}
                                           for f in sorted(code.files, key=lambda f: f.name)]}
    atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    try:
        tmp.rename(dest)
    except OSError:  # recorded meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return version


def history(versions: Path) -> list[dict[str, str]]:
    """The versions an org's agents were given, oldest first: `{hash, at, why}` (`up`, a reload)."""
    try:
        items = json.loads((versions / HISTORY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("hash"), str)] \
        if isinstance(items, list) else []


def add_history(versions: Path, version: str, at: str, why: str) -> None:
    """Note that the org's agents now run `version` (the caller holds the org's reload lock)."""
    items = [*history(versions), {"hash": version, "at": at, "why": why}]
    versions.mkdir(parents=True, exist_ok=True)
    atomic_write_text(versions / HISTORY, json.dumps(items, indent=1) + "\n")


def given(versions: Path) -> str | None:
    """The version the org's agents were last given (the latest in the history), or None before any."""
    items = history(versions)
    return items[-1]["hash"] if items else None


@dataclass(frozen=True)
class Version:
    """A recorded version: its hash and, for each file, its origin, original path and sha."""

    hash: str
    files: tuple[CodeFile, ...]
    root: Path

    def text(self, name: str) -> str:
        return (self.root / "files" / name).read_text(encoding="utf-8", errors="replace")


def recorded(versions: Path) -> list[str]:
    """Hashes recorded for an org, oldest first."""
    if not versions.is_dir():
        return []
    found = [p for p in versions.iterdir() if (p / MANIFEST).is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / MANIFEST).stat().st_mtime)]


def load_version(versions: Path, prefix: str) -> Version:
    """A recorded version by its hash or a unique prefix of it."""
    known = recorded(versions)
    matches = [h for h in known if h.startswith(prefix)] if prefix else []
    if len(matches) != 1:
        what = "matches several versions" if matches else "is not a recorded version"
        raise OrgCodeError(f"'{prefix}' {what} of this org's code (recorded: {', '.join(known) or 'none'})")
    root = versions / matches[0]
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    files = tuple(CodeFile(f["name"], f["origin"], Path(f["path"])) for f in manifest["files"])
    return Version(matches[0], files, root)


def diff_versions(a: Version, b: Version) -> str:
    """A unified diff of two versions' files (a file only in one is diffed against nothing)."""
    names_a = {f.name for f in a.files}
    names_b = {f.name for f in b.files}
    out: list[str] = []
    for name in sorted(names_a | names_b):
        old = a.text(name).splitlines(keepends=True) if name in names_a else []
        new = b.text(name).splitlines(keepends=True) if name in names_b else []
        out += difflib.unified_diff(old, new, fromfile=f"{a.hash}/{name}" if name in names_a else "/dev/null",
                                    tofile=f"{b.hash}/{name}" if name in names_b else "/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


# ---------------------------------------------------------------------------------------------------------------
# A research repo's own copy


def copy_library(dest: Path) -> list[Path]:
    """Copy the bundled prompts, skills and topologies into dest (a research repo's `org/`); refuses to overwrite
    a file."""
    src = bundled_root()
    pairs = [(f, dest / f.relative_to(src)) for folder in LIBRARY_FOLDERS
             for f in sorted((src / folder).rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
    existing = [str(target) for _, target in pairs if target.exists()]
    if existing:
        raise OrgCodeError(f"{existing[0]} exists; autoorg init does not overwrite files")
    for f, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return [target for _, target in pairs]
