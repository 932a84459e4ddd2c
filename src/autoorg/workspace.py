"""Git for the org: the program branch, one feature branch and worktree per agent, cleanup that never loses a
commit. Every git call in autoorg goes through this module."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import IO

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


def _require_git() -> None:
    if shutil.which("git") is None:
        raise GitError("git not found on PATH; install git (apt-get install git)")


def _run(repo: Path, *args: str) -> str:
    """Run `git <args>` in repo; a failure becomes a GitError with git's own message."""
    _require_git()
    try:
        return str(git.Git(str(repo)).execute(["git", *args]))
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
    return [b for b in out.splitlines() if b]


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
    out = _run(repo, "diff", "--name-only", "-z", "--no-renames", old, new, "--")
    return sorted(p for p in out.split("\0") if p)


def diff_text(repo: Path, old: str, new: str) -> str:
    """The full patch from old to new (binary files included), as `git apply` reads it."""
    return _run(repo, "diff", "--binary", "--no-color", old, new, "--")


def diff_since_fork(repo: Path, base: str, branch: str) -> str:
    """What branch changed since it forked from base (`git diff base...branch`), for people to read."""
    return _run(repo, "diff", "--no-color", "--stat", "--patch", f"{base}...{branch}", "--")


def diff_stat(repo: Path, old: str, new: str) -> str:
    """`1 file changed, 2 insertions(+), 1 deletion(-)`, or '' when the trees are equal."""
    return _run(repo, "diff", "--shortstat", old, new, "--").strip()


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


def export_tree(repo: Path, rev: str, dest: Path) -> None:
    """Write the exact tree of rev into dest (a fresh folder): what a run executes, whatever the worktree holds."""
    _require_git()
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["git", "archive", "--format=tar", rev], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        extract_archive(proc.stdout, dest)
    except (tarfile.TarError, GitError) as exc:
        proc.kill()
        raise GitError(f"git archive {rev[:10]} failed: {exc}") from None
    finally:
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise GitError(f"git archive {rev[:10]} failed: {err.decode(errors='replace').strip()}")


def extract_archive(stream: IO[bytes], dest: Path) -> None:
    """Unpack a tar stream into the folder dest as safely as tarfile's `filter="data"` (which Python 3.11.0-3.11.3
    lack): folders, plain files and symlinks that resolve inside dest. An absolute or `..` name, a link out of
    dest, a hard link, a device or a FIFO raises GitError. Links are made last and checked once all exist, so
    no file is ever written through one and no chain of links can point outside."""
    root = os.path.realpath(dest)
    links: list[tuple[str, str]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            target = _inside(root, member.name)
            if member.isdir():
                os.makedirs(target, mode=0o755, exist_ok=True)
            elif member.isfile():
                os.makedirs(_inside(root, os.path.dirname(member.name) or "."), mode=0o755, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                mode = 0o755 if member.mode & 0o100 else 0o644
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.utime(target, (member.mtime, member.mtime))
            elif member.issym():
                if os.path.isabs(member.linkname):
                    raise GitError(f"refusing {member.name!r}: a link to the absolute path {member.linkname!r}")
                links.append((target, member.linkname))
            else:
                raise GitError(f"refusing {member.name!r}: not a file, folder or symlink")
    made: list[str] = []
    try:
        for target, linkname in links:
            if os.path.realpath(os.path.dirname(target)) != os.path.dirname(target):
                raise GitError(f"refusing {os.path.relpath(target, root)!r}: a path through a symlink")
            os.symlink(linkname, target)
            made.append(target)
        for target, linkname in links:
            if not _is_within(root, os.path.realpath(target)):
                raise GitError(f"refusing {os.path.relpath(target, root)!r}: its link {linkname!r} leaves the tree")
    except BaseException:
        for target in made:  # a refused tree keeps no link at all, so nothing in dest points out of it
            os.unlink(target)
        raise


def _inside(root: str, name: str) -> str:
    """root/name, for a relative name without `..` whose existing parts resolve inside root."""
    if os.path.isabs(name) or ".." in Path(name).parts:
        raise GitError(f"refusing {name!r}: an absolute or '..' path")
    path = os.path.join(root, name)
    if not _is_within(root, os.path.realpath(path)):
        raise GitError(f"refusing {name!r}: it resolves outside the tree")
    return path


def _is_within(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def checkout_paths(worktree: Path, rev: str, paths: list[str]) -> None:
    """Make paths in a worktree equal to rev's version (index and files); others are left alone."""
    if paths:
        _run(worktree, "checkout", rev, "--", *paths)


def keep_ref(repo: Path, ref: str, commit: str) -> None:
    """Point a ref (under refs/autoorg/) at a commit so gc never prunes it while the ledger names it."""
    _run(repo, "update-ref", ref, commit)


def squash_onto(repo: Path, commit: str, onto: str, workdir: Path, message: str,
                author: str | None = None) -> str | None:
    """One commit on top of onto carrying commit's own changes (since their merge base), made in a temporary
    worktree at workdir. Returns the new commit; onto itself when the changes are already there; None on a
    conflict. The temporary worktree is always removed.

    A three-way merge first; when it conflicts only because both sides changed *neighbouring* lines (two knobs
    on adjacent lines), the candidate's hunks are applied without context, which succeeds exactly when every
    line it replaced is still unchanged on onto."""
    if workdir.exists():
        _run(repo, "worktree", "remove", "--force", str(workdir))
    _run(repo, "worktree", "prune")
    workdir.parent.mkdir(parents=True, exist_ok=True)
    _run(repo, "worktree", "add", "--quiet", "--detach", str(workdir), onto)
    try:
        try:
            _run(workdir, *_identity(workdir), "merge", "--squash", "--quiet", commit)
        except GitError:
            _run(workdir, "reset", "--hard", "--quiet", onto)
            base = _run(repo, "merge-base", onto, commit)
            patch = workdir.parent / f"{workdir.name}.patch"
            patch.write_text(_run(repo, "diff", "--binary", "-U0", base, commit, "--") + "\n")
            try:
                _run(workdir, "apply", "--index", "--unidiff-zero", "-C0", str(patch))
            except GitError:
                return None
            finally:
                patch.unlink(missing_ok=True)
        if not _run(workdir, "status", "--porcelain", "--untracked-files=no").strip():
            return onto
        args = [*_identity(workdir), "commit", "--quiet", "--no-verify", "-m", message]
        if author:
            args += ["--author", f"{author} <{author}@autoorg>"]
        _run(workdir, *args)
        return head_commit(workdir)
    finally:
        _run(repo, "worktree", "remove", "--force", str(workdir))


def advance_branch(repo: Path, branch: str, new: str, old: str) -> bool:
    """Compare-and-swap: move branch from old to new only if it still points at old. Returns whether it moved."""
    try:
        _run(repo, "update-ref", "-m", "autoorg gate: promote", f"refs/heads/{branch}", new, old)
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
