"""What a run may change: the task's editable and protected paths."""

from __future__ import annotations

from autoorg.spec import TaskSpec

# ---------------------------------------------------------------------------------------------------------------
# What a run may change


def _matches(path: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    pattern = pattern.strip("/") if pattern not in ("", "/") else ""
    return path == pattern or path.startswith(pattern + "/") or fnmatchcase(path, pattern)


def is_protected(task: TaskSpec, path: str) -> bool:
    return any(_matches(path, pat) for pat in task.protected)


def boundary_violations(task: TaskSpec, changed: list[str]) -> list[str]:
    """Changed paths an agent may not touch, each with why: `tiny/task.yaml (protected)`."""
    bad = []
    for p in changed:
        if is_protected(task, p):
            bad.append(f"{p} (protected)")
        elif not any(_matches(p, pat) for pat in task.editable):
            bad.append(f"{p} (not editable)")
    return bad
