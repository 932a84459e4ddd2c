"""A run's source is the committed tree byte for byte (raw blobs: no filters, attributes or export rules), with
links only inside it and no path out of it."""

from __future__ import annotations

import os
import subprocess
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

    with pytest.raises(GitError, match="refusing 'escape'"):
        workspace.export_tree(repo, rev, tmp_path / "out")
    assert not (tmp_path / "out" / "escape").is_symlink()


def commit_tree(repo: Path, *entries: tuple[str, str, str]) -> str:
    """A commit of a hand-made tree: (mode, name, content) entries that `git add` would never produce."""
    lines = []
    for mode, name, content in entries:
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=content, text=True,
                              capture_output=True, check=True).stdout.strip()
        lines.append(f"{mode} blob {blob}\t{name}")
    tree = subprocess.run(["git", "mktree", "--missing"], cwd=repo, input="\n".join(lines) + "\n", text=True,
                          capture_output=True, check=True).stdout.strip()
    return git(repo, "commit-tree", tree, "-m", "hostile")


@pytest.mark.parametrize("entries, reason", [
    ([("100644", "..", "x")], "an absolute or '..' path"),
    ([("100644", ".", "x")], "an absolute or '..' path"),
    # a chain: `a` looks inside while `b` does not exist yet, then `b` makes it point at the parent
    ([("120000", "a", "b/.."), ("120000", "b", ".")], "leaves the tree"),
    ([("120000", "up", "..")], "leaves the tree"),
])
def test_hostile_trees_are_refused_and_write_nothing_outside(
        repo: Path, tmp_path: Path, entries: list[tuple[str, str, str]], reason: str) -> None:
    rev = commit_tree(repo, *entries)
    dest = tmp_path / "box" / "out"
    with pytest.raises(GitError, match=reason):
        workspace.export_tree(repo, rev, dest)
    assert [p for p in (tmp_path / "box").iterdir() if p != dest] == []
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_committed_export_attributes_and_filters_do_not_apply(repo: Path, tmp_path: Path) -> None:
    (repo / ".gitattributes").write_text("stamp.txt export-subst\nhidden.txt export-ignore\n*.txt text eol=crlf\n")
    (repo / "stamp.txt").write_text("commit $Format:%H$\n")
    (repo / "hidden.txt").write_text("still here\n")
    rev = commit_all(repo)
    dest = tmp_path / "out"
    workspace.export_tree(repo, rev, dest)
    assert (dest / "stamp.txt").read_bytes() == b"commit $Format:%H$\n"
    assert (dest / "hidden.txt").read_bytes() == b"still here\n"


def test_an_export_never_writes_into_a_folder_with_files(repo: Path, tmp_path: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    rev = commit_all(repo)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "left").write_text("over")
    with pytest.raises(GitError, match="not empty"):
        workspace.export_tree(repo, rev, tmp_path / "out")
