"""What a person reads: one exception tree (the CLI catches AutoorgError, prints str(err) on one line to stderr,
exits 2), and `Say`, the callback every long operation reports its progress through, one line at a time."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]  # print, a log file's writer, the daemon's log, a test's list.append


class AutoorgError(Exception):
    """Base of every error a user can cause or fix. str() is the one line they see."""


class SpecError(AutoorgError):
    """An org or task spec that cannot be read, expanded or validated."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 key: str | None = None, hint: str | None = None) -> None:
        where = source or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        text = f"{where}: {message}" if where else message
        if key:
            text += f" (key '{key}')"
        if hint:
            text += f"; {hint}"
        super().__init__(text)


class SpecProblems(SpecError):
    """Several problems in one spec, all reported at once: one line each."""

    def __init__(self, problems: list[SpecError]) -> None:
        self.problems = problems
        AutoorgError.__init__(self, f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


class ComputeError(AutoorgError):
    """More GPUs asked for than exist, or a slot that does not exist."""


class GitError(AutoorgError):
    """A git call failed, git is missing, or the repository is in a state we refuse to touch."""


class TmuxError(AutoorgError):
    """A tmux call failed or tmux is missing."""


class StateError(AutoorgError):
    """No org where one is needed, an ambiguous tag, or an org already running."""


class BackendError(AutoorgError):
    """An agent backend that cannot start (unknown name, missing CLI or credentials)."""


class CommsError(AutoorgError):
    """A bad message, recipient, idea or status file."""


class LedgerError(AutoorgError):
    """The experiment ledger cannot be read or written."""


class RunnerError(AutoorgError):
    """An experiment that cannot be started (not in a worktree, protected paths touched, no slot)."""


class TaskError(AutoorgError):
    """A task file that is missing or whose command cannot run."""


class DaemonError(AutoorgError):
    """The daemon cannot start (another one runs for the org, or the org is missing)."""
