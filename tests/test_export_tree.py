"""A run's source is the committed tree, unpacked as safely as tarfile's `data` filter on every supported Python."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from autoorg import workspace
from autoorg.errors import GitError
from autoorg.testing import git


def commit_all(repo: Path) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tree")
    return git(repo, "rev-parse", "HEAD")


def test_files_folders_modes_and_inside_links_come_out_exact(repo: Path, tmp_path: Path) -> None:
    (repo / "pkg" / "deep").mkdir(parents=True)
    (repo / "pkg" / "deep" / "data.txt").write_text("payload\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("pkg/deep/data.txt", repo / "alias.txt")
    os.symlink("../run.sh", repo / "pkg" / "run.sh")
    rev = commit_all(repo)

    dest = tmp_path / "out"
    workspace.export_tree(repo, rev, dest)

    assert (dest / "pkg" / "deep" / "data.txt").read_text() == "payload\n"
    assert (dest / "run.sh").stat().st_mode & 0o111
    assert not (dest / "pkg" / "deep" / "data.txt").stat().st_mode & 0o111
    assert os.readlink(dest / "alias.txt") == "pkg/deep/data.txt"
    assert (dest / "pkg" / "run.sh").read_text().startswith("#!/bin/sh")
    exported = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir() or p.is_symlink())
    assert exported == sorted(git(repo, "ls-tree", "-r", "--name-only", rev).splitlines())


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "pkg/../../outside"])
def test_a_committed_link_out_of_the_tree_is_refused(repo: Path, tmp_path: Path, target: str) -> None:
    (repo / "pkg").mkdir()
    os.symlink(target, repo / "escape")
    rev = commit_all(repo)

    with pytest.raises(GitError, match="git archive .* failed: refusing 'escape'"):
        workspace.export_tree(repo, rev, tmp_path / "out")
    assert not (tmp_path / "out" / "escape").is_symlink()


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return buf


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


@pytest.mark.parametrize("members, reason", [
    ([(entry("/abs.txt"), b"x")], "an absolute or '..' path"),
    ([(entry("a/../../up.txt"), b"x")], "an absolute or '..' path"),
    ([(entry("fifo", tarfile.FIFOTYPE), b"")], "not a file, folder or symlink"),
    ([(entry("dev", tarfile.CHRTYPE), b"")], "not a file, folder or symlink"),
    ([(entry("hard", tarfile.LNKTYPE, "/etc/passwd"), b"")], "not a file, folder or symlink"),
    # a chain: `a` looks inside while `b` does not exist yet, then `b` makes it point at the parent
    ([(entry("a", tarfile.SYMTYPE, "b/.."), b""), (entry("b", tarfile.SYMTYPE, "."), b"")], "leaves the tree"),
    # a file written through a link that leaves: refused before anything lands outside
    ([(entry("d", tarfile.SYMTYPE, ".."), b""), (entry("d/x", tarfile.SYMTYPE, "."), b"")], "through a symlink"),
])
def test_hostile_archives_are_refused_and_write_nothing_outside(
        tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], reason: str) -> None:
    dest = tmp_path / "box" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(GitError, match=reason):
        workspace.extract_archive(archive(*members), dest)
    outside = [p for p in (tmp_path / "box").iterdir() if p != dest]
    assert outside == []
    assert not any(stat.S_ISFIFO(p.lstat().st_mode) or stat.S_ISCHR(p.lstat().st_mode) for p in dest.rglob("*"))
    assert not any(p.is_symlink() for p in dest.rglob("*"))
