"""Git for the org: the program branch, one feature branch and worktree per agent, cleanup that never loses a
commit. Every git call in autoorg goes through this module."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # a missing git is our error to report, not an ImportError

import git  # noqa: E402

from autoorg.errors import GitError  # noqa: E402
from autoorg.paths import STATE_DIR  # noqa: E402


def program_branch(tag: str) -> str:
    return f"org/{tag}"


def feature_branch(tag: str, agent: str) -> str:
    """`org/<tag>.<agent>`: git cannot hold both `org/<tag>` and `org/<tag>/<agent>` (a ref is a file or a
    folder, not both); tags and agent names never contain '.', so this is unambiguous."""
    return f"org/{tag}.{agent}"


def island_branch(tag: str, island: str) -> str:
    """`org/<tag>.island.<name>`: an island's program branch. Agent names never contain '.', so no agent's branch
    is ever named like it."""
    return f"org/{tag}.island.{island}"


def _require_git() -> None:
    if shutil.which("git") is None:
        raise GitError("git not found on PATH; install git (apt-get install git)")


# No hook and no fsmonitor command runs in any git call autoorg makes: an agent can write the shared .git (its
# hooks/ and config), and the gate's and the runner's git calls must not run its code.
SAFE_GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `git <args>` in repo (env: extra variables); a failure becomes a GitError with git's own message."""
    _require_git()
    try:
        return str(git.Git(str(repo)).execute([*SAFE_GIT, *args], env=env))
    except git.GitCommandError as exc:
        detail = (exc.stderr or exc.stdout or str(exc)).strip().splitlines()
        msg = next((ln.strip() for ln in detail if ln.strip()), "failed").removeprefix("stderr: ").strip("' ")
        raise GitError(f"git {' '.join(args[:2])} failed: {msg}") from None


def find_repo(start: Path | None = None) -> Path:
    """The main repository's root, also when called from inside one of its worktrees."""
    start = Path(start or Path.cwd())
    _require_git()
    try:
        common = Path(_run(start, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    except GitError:
        raise GitError(f"not a git repository: {start}; run autoorg inside your research repo "
                       "(or `git init` one)") from None
    if common.name == ".git":
        return common.parent
    raise GitError(f"{start} is inside a bare repository; autoorg needs a working tree")


def toplevel(path: Path) -> Path:
    """The root of the worktree containing path."""
    return Path(_run(path, "rev-parse", "--show-toplevel"))


def rev_parse(repo: Path, rev: str) -> str:
    try:
        return _run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except GitError:
        raise GitError(f"unknown revision '{rev}' in {repo}") from None


def branch_exists(repo: Path, branch: str) -> bool:
    try:
        _run(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")
        return True
    except GitError:
        return False


def dirty_paths(repo: Path) -> list[str]:
    """Uncommitted changes (untracked files included), ignoring what git ignores."""
    out = _run(repo, "status", "--porcelain", "--untracked-files=normal")
    return [line[3:] for line in out.splitlines() if line.strip()]


def ensure_excluded(repo: Path) -> None:
    """Keep runtime state out of git: `.autoorg/` in `.git/info/exclude` (never touch the user's .gitignore)."""
    exclude = Path(_run(repo, "rev-parse", "--path-format=absolute", "--git-path", "info/exclude"))
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{STATE_DIR}/" not in lines:
        exclude.write_text("\n".join([*lines, f"/{STATE_DIR}/"]) + "\n")


def create_branch(repo: Path, branch: str, rev: str) -> bool:
    """Create branch at rev; an existing branch is kept as it is. Returns whether it was created."""
    if branch_exists(repo, branch):
        return False
    _run(repo, "branch", branch, rev)
    return True


def add_worktree(repo: Path, path: Path, branch: str, base: str) -> bool:
    """A worktree at path on branch (created from base when new). Returns whether the branch was created."""
    created = not branch_exists(repo, branch)
    if created:
        _run(repo, "worktree", "add", "--quiet", "-b", branch, str(path), base)
    else:
        _run(repo, "worktree", "add", "--quiet", str(path), branch)
    return created


def commit_all(worktree: Path, message: str, author: str | None = None) -> str | None:
    """Commit every change in a worktree; returns the new commit, or None when there was nothing to commit."""
    if not dirty_paths(worktree):
        return None
    _run(worktree, "add", "--all")
    args = [*_identity(worktree), "commit", "--quiet", "--no-verify", "-m", message]
    if author:
        args += ["--author", f"{author} <{author}@autoorg>"]
    _run(worktree, *args)
    return head_commit(worktree)


def _identity(repo: Path) -> list[str]:
    """A committer identity for machines where git has none configured (fresh CI machines, containers)."""
    try:
        _run(repo, "config", "user.email")
        return []
    except GitError:
        return ["-c", "user.name=autoorg", "-c", "user.email=autoorg@localhost"]


def head_commit(path: Path, rev: str = "HEAD") -> str:
    return _run(path, "rev-parse", rev)


def current_branch(worktree: Path) -> str:
    return _run(worktree, "rev-parse", "--abbrev-ref", "HEAD")


def remove_worktree(repo: Path, path: Path, agent: str) -> str | None:
    """Remove an agent's worktree without losing work: uncommitted changes are first committed to its branch.

    Returns the commit made for left-over changes, if any. Refuses any path outside `<repo>/.autoorg/`.
    """
    path = Path(path).resolve()
    state_root = (Path(repo).resolve() / STATE_DIR)
    if state_root not in path.parents:
        raise GitError(f"refusing to remove {path}: it is outside {state_root}")
    saved = None
    if path.exists():
        saved = commit_all(path, f"autoorg down: uncommitted work of {agent}", author=agent)
        _run(repo, "worktree", "remove", "--force", str(path))
    _run(repo, "worktree", "prune")
    return saved


def commits_not_on(repo: Path, branch: str, base: str) -> int:
    """How many commits branch has that base does not."""
    return int(_run(repo, "rev-list", "--count", f"{base}..{branch}"))


def delete_branch(repo: Path, branch: str) -> None:
    _run(repo, "branch", "-D", branch)


def agent_branches(repo: Path, tag: str) -> list[str]:
    """Every agent branch of an org, also those of agents no longer in its spec."""
    out = _run(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{feature_branch(tag, '*')}")
    prefix = feature_branch(tag, "")
    return [b for b in out.splitlines() if b and "." not in b.removeprefix(prefix)]  # not an island's branch


# ---------------------------------------------------------------------------------------------------------------
# Experiments and the gate: what changed, exact snapshots, squashing a candidate onto the program head


def pending_paths(worktree: Path) -> tuple[list[str], list[str]]:
    """Uncommitted changes of a worktree, one path per file: (changed tracked files, untracked files)."""
    out = _run(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    entries = [e for e in out.split("\0") if len(e) > 3]
    tracked = sorted({e[3:] for e in entries if not e.startswith("??")})
    untracked = sorted({e[3:] for e in entries if e.startswith("??")})
    return tracked, untracked


def commit_paths(worktree: Path, paths: list[str], message: str, author: str | None = None) -> str | None:
    """Commit exactly these paths (additions, changes, deletions); None when they hold no change."""
    if paths:
        _run(worktree, "add", "--all", "--", *paths)
    if not _run(worktree, "diff", "--cached", "--name-only").strip():
        return None
    args = [*_identity(worktree), "commit", "--quiet", "--no-verify", "-m", message]
    if author:
        args += ["--author", f"{author} <{author}@autoorg>"]
    _run(worktree, *args)
    return head_commit(worktree)


def changed_paths(repo: Path, old: str, new: str) -> list[str]:
    """Paths whose content differs between two revisions (a rename counts as both names)."""
    out = _run(repo, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", old, new, "--")
    return sorted(p for p in out.split("\0") if p)


def branch_diff(repo: Path, base: str, branch: str) -> str:
    """What branch changed since it parted from base (`git diff base...branch`), a stat then the patch, for people
    to read (`autoorg diff`, the dashboard's d)."""
    return _run(repo, "diff", "--no-color", "--stat", "--patch", f"{base}...{branch}", "--")


def diff_text(repo: Path, old: str, new: str) -> str:
    """The full patch from old to new (binary files included), as `git apply` reads it."""
    return _run(repo, "diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", old, new, "--")


def diff_stat(repo: Path, old: str, new: str) -> str:
    """`1 file changed, 2 insertions(+), 1 deletion(-)`, or '' when the trees are equal."""
    return _run(repo, "diff", "--shortstat", "--no-ext-diff", "--no-textconv", old, new, "--").strip()


def tree_of(repo: Path, rev: str) -> str:
    """The tree id of a commit: two commits with the same tree run the same code."""
    return _run(repo, "rev-parse", f"{rev}^{{tree}}")


def parent_of(repo: Path, rev: str) -> str | None:
    try:
        return _run(repo, "rev-parse", "--verify", "--quiet", f"{rev}^")
    except GitError:
        return None


def path_fingerprint(repo: Path, rev: str, paths: list[str]) -> str:
    """The blob ids of paths at rev (`git ls-tree`), as one text: equal text means equal files."""
    if not paths:
        return ""
    return _run(repo, "ls-tree", "-r", "--full-tree", rev, "--", *paths)


def read_file_at(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision, or None when it does not exist there."""
    try:
        return _run(repo, "show", f"{rev}:{path}")
    except GitError:
        return None


def export_tree(repo: Path, rev: str, dest: Path, paths: list[str] | None = None) -> None:
    """Write rev's committed tree into dest (a new or empty folder) byte for byte: raw blobs read with `git
    cat-file --batch`, so no smudge or clean filter, no attribute, no export-subst/export-ignore applies. The
    executable bit is kept; a symlink is written as a symlink only when it resolves inside dest; an absolute
    path, a `.`/`..` part or a link out of the tree raises GitError. Submodules come out as empty folders. With
    paths (files, folders or glob patterns), only what they name (the protected evaluator)."""
    entries = [_tree_entry(e) for e in _run(repo, "ls-tree", "-r", "-z", "--full-tree", rev).split("\0") if e]
    if paths is not None:
        entries = [e for e in entries if any(_names(e[2], p) for p in paths)]
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise GitError(f"cannot export {rev[:10]} into {dest}: the folder is not empty")
    root = os.path.realpath(dest)
    for mode, _oid, name in entries:
        _check_name(name)
        if mode == "160000":
            os.makedirs(os.path.join(root, name), exist_ok=True)
        else:
            os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    links: list[tuple[str, str]] = []
    with _blob_reader(repo) as read_blob:
        for mode, oid, name in entries:
            if mode == "160000":
                continue
            data = read_blob(oid)
            target = os.path.join(root, name)
            if mode == "120000":
                links.append((target, os.fsdecode(data)))
                continue
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o755 if mode == "100755" else 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
    _make_links(root, links)


def tree_blobs(repo: Path, rev: str, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The raw content of every file (a link: its target) at rev whose path wanted() accepts."""
    entries = [_tree_entry(e) for e in _run(repo, "ls-tree", "-r", "-z", "--full-tree", rev).split("\0") if e]
    with _blob_reader(repo) as read_blob:
        return {name: read_blob(oid) for mode, oid, name in entries if mode != "160000" and wanted(name)}


def _names(path: str, pattern: str) -> bool:
    """Does pattern (a file, a folder or a glob) name path?"""
    pattern = pattern.strip("/")
    return path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatchcase(path, pattern)


def _tree_entry(line: str) -> tuple[str, str, str]:
    """`<mode> <type> <oid>\t<path>` of `git ls-tree -z` → (mode, oid, path)."""
    meta, name = line.split("\t", 1)
    mode, _kind, oid = meta.split()
    if mode not in ("100644", "100755", "120000", "160000"):
        raise GitError(f"refusing {name!r}: git mode {mode} is not a file, link or submodule")
    return mode, oid, name


def _check_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise GitError(f"refusing {name!r}: an absolute or '..' path")


@contextlib.contextmanager
def _blob_reader(repo: Path) -> Iterator[Callable[[str], bytes]]:
    """One `git cat-file --batch` process; yields read_blob(oid) → the blob's raw bytes (never filtered)."""
    _require_git()
    proc = subprocess.Popen([*SAFE_GIT, "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None

    def read_blob(oid: str) -> bytes:
        stdin.write(oid.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"git cat-file {oid[:10]} failed: {b' '.join(header).decode(errors='replace')}")
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after each object
        return data

    try:
        yield read_blob
    finally:
        stdin.close()
        stdout.close()
        proc.wait()


def _make_links(root: str, links: list[tuple[str, str]]) -> None:
    """Links are made last, after every file, so no file is written through one; once all exist, each must
    resolve inside root (so no chain of links points out), else none is kept."""
    made: list[str] = []
    try:
        for target, linkname in links:
            name = os.path.relpath(target, root)
            if os.path.isabs(linkname):
                raise GitError(f"refusing {name!r}: a link to the absolute path {linkname!r}")
            try:
                os.symlink(linkname, target)
            except OSError as exc:
                raise GitError(f"refusing {name!r}: {exc.strerror}") from None
            made.append(target)
        for target, linkname in links:
            if os.path.commonpath([root, os.path.realpath(target)]) != root:
                raise GitError(f"refusing {os.path.relpath(target, root)!r}: its link {linkname!r} leaves the tree")
    except BaseException:
        for target in made:  # a refused tree keeps no link at all, so nothing in dest points out of it
            os.unlink(target)
        raise


def checkout_paths(worktree: Path, rev: str, paths: list[str]) -> None:
    """Make paths in a worktree equal to rev's version (index and files); others are left alone."""
    if paths:
        _run(worktree, "checkout", rev, "--", *paths)


def keep_ref(repo: Path, ref: str, commit: str) -> None:
    """Point a ref (under refs/autoorg/) at a commit so gc never prunes it while the ledger names it."""
    _run(repo, "update-ref", ref, commit)


@contextlib.contextmanager
def isolated_git(repo: Path) -> Iterator[dict[str, str]]:
    """The environment for a git call that must see the repository's objects and nothing an agent can write: an
    empty bare GIT_DIR (no config, no info/attributes, no worktree .gitattributes) over the repository's object
    store, and neither the user's nor the system's config. A merge there runs no merge driver and no filter an
    agent defined (`merge=<driver>` in info/attributes or .gitattributes and `merge.<driver>.driver` in config
    run a command inside `git merge-tree`)."""
    objects = Path(_run(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "objects"
    with tempfile.TemporaryDirectory(prefix="autoorg-git-") as tmp:
        _run(Path(tmp), "init", "-q", "--bare", "--template=", tmp)
        yield {"GIT_DIR": tmp, "GIT_OBJECT_DIRECTORY": str(objects), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": os.devnull}


def squash_onto(repo: Path, commit: str, onto: str, message: str, author: str | None = None) -> str | None:
    """One commit on top of onto carrying commit's own changes (since their merge base), made without any
    checkout (`git merge-tree --write-tree` in `isolated_git`, `git commit-tree`): no worktree, so no filter,
    merge driver or hook touches it.
    Returns the new commit; onto itself when the changes are already there; None on a conflict.

    A three-way merge first; when it conflicts only because both sides changed *neighbouring* lines (two knobs
    on adjacent lines), the candidate's hunks are applied without context to onto's tree in a private index,
    which succeeds exactly when every line it replaced is still unchanged on onto."""
    base = _run(repo, "merge-base", onto, commit)
    try:
        with isolated_git(repo) as env:
            tree = _run(repo, "merge-tree", "--write-tree", "--no-messages", onto, commit, env=env).splitlines()[0]
    except GitError:
        with tempfile.TemporaryDirectory(prefix="autoorg-squash-") as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            patch = Path(tmp) / "candidate.patch"
            patch.write_text(_run(repo, "diff", "--binary", "--no-ext-diff", "--no-textconv", "-U0", base, commit,
                                  "--") + "\n")
            _run(repo, "read-tree", onto, env=env)
            try:
                _run(repo, "apply", "--cached", "--unidiff-zero", "-C0", str(patch), env=env)
            except GitError:
                return None
            tree = _run(repo, "write-tree", env=env)
    if tree == tree_of(repo, onto):
        return onto
    who = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@autoorg"} if author else None
    return _run(repo, *_identity(repo), "commit-tree", tree, "-p", onto, "-m", message, env=who)


def advance_branch(repo: Path, branch: str, new: str, old: str, why: str = "promote") -> bool:
    """Compare-and-swap: move branch from old to new only if it still points at old. Returns whether it moved."""
    try:
        _run(repo, "update-ref", "-m", f"autoorg gate: {why}", f"refs/heads/{branch}", new, old)
        return True
    except GitError:
        return False


def is_ancestor(repo: Path, ancestor: str, rev: str) -> bool:
    try:
        _run(repo, "merge-base", "--is-ancestor", ancestor, rev)
        return True
    except GitError:
        return False


def branch_heads(repo: Path, tag: str) -> dict[str, str]:
    """The head commit of an org's program branch and every agent branch, in one git call."""
    out = _run(repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
               f"refs/heads/{program_branch(tag)}", f"refs/heads/{feature_branch(tag, '*')}")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)
