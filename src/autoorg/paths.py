"""Where everything lives. Every user-visible path resolves here, each with an env override."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoorg.errors import StateError

STATE_DIR = ".autoorg"


@dataclass(frozen=True)
class OrgPaths:
    """The on-disk layout of one running org: `<repo>/.autoorg/<tag>/`."""

    home: Path

    @property
    def tag(self) -> str:
        return self.home.name

    @property
    def repo(self) -> Path:
        return self.home.parent.parent

    @property
    def org_yaml(self) -> Path:
        return self.home / "org.yaml"

    @property
    def state_json(self) -> Path:
        return self.home / "state.json"

    @property
    def worktrees(self) -> Path:
        return self.home / "worktrees"

    def worktree(self, agent: str) -> Path:
        return self.worktrees / agent

    @property
    def comms(self) -> Path:
        return self.home / "comms"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def ledger(self) -> Path:
        return self.home / "ledger.sqlite"

    @property
    def results_tsv(self) -> Path:
        return self.home / "results.tsv"

    @property
    def locks(self) -> Path:
        return self.home / "locks"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def orgcode(self) -> Path:
        """Each version of the org's code it ran, a copy kept per hash (orgcode.record)."""
        return self.home / "orgcode"


def org_paths(repo: Path, tag: str) -> OrgPaths:
    return OrgPaths(Path(repo).resolve() / STATE_DIR / tag)


def known_tags(repo: Path) -> list[str]:
    """Tags that have state under `<repo>/.autoorg/` (running or not)."""
    root = Path(repo) / STATE_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").is_file())


def resolve_org(repo: Path | None, tag: str | None) -> OrgPaths:
    """The org a command acts on: `AUTOORG_HOME` when set (agents' panes), else `--tag`, else the only one."""
    env_home = os.environ.get("AUTOORG_HOME")
    if env_home and tag is None:
        return OrgPaths(Path(env_home).resolve())
    if repo is None:
        raise StateError("not inside a git repository and AUTOORG_HOME is not set; cd into the research repo")
    if tag is not None:
        paths = org_paths(repo, tag)
        if not paths.state_json.is_file():
            found = ", ".join(known_tags(repo)) or "none"
            raise StateError(f"no org with tag '{tag}' in {repo} (orgs here: {found})")
        return paths
    tags = known_tags(repo)
    if not tags:
        raise StateError(f"no org in {repo}; start one with `autoorg up`")
    if len(tags) > 1:
        raise StateError(f"several orgs in {repo} ({', '.join(tags)}); pass --tag")
    return org_paths(repo, tags[0])


def autoorg_argv(*args: str) -> list[str]:
    """argv running this same autoorg (same interpreter), independent of PATH."""
    return [sys.executable, "-m", "autoorg", *args]


def autoorg_command(*args: str) -> str:
    """A shell command running this same autoorg (same interpreter), independent of PATH."""
    return " ".join(shlex.quote(a) for a in autoorg_argv(*args))


def bin_dir() -> Path:
    """The folder of this autoorg's interpreter (and its `autoorg` script): first on every agent's PATH."""
    return Path(sys.executable).parent


def tmux_socket(flag: str | None = None) -> str | None:
    """The private tmux server's socket name: `--socket`, else `AUTOORG_TMUX_SOCKET`, else the default server."""
    return flag or os.environ.get("AUTOORG_TMUX_SOCKET") or None


def data_dir() -> Path:
    """Cache for task data (tokenized corpora): `AUTOORG_DATA`, default `~/.cache/autoorg`."""
    env = os.environ.get("AUTOORG_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoorg"


def user_dir() -> Path:
    """The user's own org code (prompts/, skills/): `AUTOORG_USER_DIR`, else `$XDG_CONFIG_HOME/autoorg`, default
    `~/.config/autoorg`."""
    env = os.environ.get("AUTOORG_USER_DIR")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config).expanduser() if config else Path.home() / ".config") / "autoorg"


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see half a file. Text read from
    bytes that are not UTF-8 (git's output of a patch: surrogate escapes) is written back as those bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
