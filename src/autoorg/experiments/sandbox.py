"""A sealed run: it writes only its own run folder and private temp, sees an allow-listed environment, and every
process it starts dies with it; the kernel's accounting of the whole process tree gives its CPU seconds.

  namespaces  (Linux user + mount + pid namespaces through `unshare`, no root needed) our init is PID 1 of a
              fresh PID namespace: it bind-mounts the run folder writable and the org's state, the repository
              (its `.git` included) and the task's data cache read-only, hides the task's evaluation-only data
              files (the validation and held-out splits: an empty, read-only file over each), then makes every
              other mount read-only too (/tmp and the user's home included: nothing a run writes outlives it or
              reaches the next run) but /proc, /sys and /dev, with a fresh private tmpfs on /dev/shm; its temp
              and home are folders of its run folder (TMPDIR, HOME). It starts the command in a nested user and
              mount namespace, which locks those mounts (the command, root in it, cannot undo them); when the command ends init takes
              every descendant down, setsid or not
  subreaper   (no namespaces: said once in `doctor` and `up`, recorded per run) nothing is read-only or hidden; our
              init is a child subreaper, so descendants that left the run's session are still ours to kill and
              reap

Either way our init reaps every descendant, so the runner's wait4() on the sealed process returns the CPU time of
the whole tree (the kernel's count, not the run's report). This file is also that init: it runs as a script by
path, so it imports the standard library only.

    python sandbox.py init --status-fd N [--subreaper] [--rw DIR --ro PATH --hide PATH ...] -- ARGV
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import signal
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SEAL_ENV = "AUTOORG_SEAL"  # "subreaper" forces the fallback (tests, machines where namespaces misbehave)
NAMESPACES, SUBREAPER = "namespaces", "subreaper"
# What a run inherits of the org's environment: nothing else (no AUTOORG_HOME, no API keys, no TMUX*).
ALLOWED_ENV = ("PATH", "LANG", "TERM", "AUTOORG_DATA")
ALLOWED_PREFIXES = ("LC_", "PYTHON")
UNSHARE = ("unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")


@dataclass(frozen=True)
class Seal:
    """How runs are sealed on this machine: `namespaces`, or `subreaper` with why namespaces are not used."""

    mode: str
    why: str = ""

    def notice(self) -> str:
        """The one line `doctor` and `up` print when runs are not fully sealed ('' when they are)."""
        if self.mode == NAMESPACES:
            return ""
        return (f"runs are not sealed ({self.why}): a run can write the org's state and the repository and read "
                "the task's evaluation data; its leftover processes are still killed and its CPU time measured")


@functools.cache
def seal_mode() -> Seal:
    """Namespaces when `unshare` can make them here (probed once per process), else the subreaper fallback."""
    if os.environ.get(SEAL_ENV) == SUBREAPER:
        return Seal(SUBREAPER, f"{SEAL_ENV}={SUBREAPER}")
    if not sys.platform.startswith("linux"):
        return Seal(SUBREAPER, f"no Linux namespaces on {sys.platform}")
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return Seal(SUBREAPER, "no `unshare` on PATH (util-linux)")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Seal(SUBREAPER, f"`unshare` failed: {exc}")
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return Seal(SUBREAPER, f"user namespaces unavailable: {last}")
    return Seal(NAMESPACES)


def run_env(extra: dict[str, str], temp: Path, home: Path) -> dict[str, str]:
    """The environment of a sealed run: the allow-listed part of ours, `extra` (the slot's thread and CUDA
    variables, AUTOORG_EXP/SEED/BUDGET), TMPDIR and HOME its private temp and home (caches that tools keep
    under ~ start empty in each run: one run cannot leave a compiled kernel or a file for the next)."""
    env = {k: v for k, v in os.environ.items() if k in ALLOWED_ENV or k.startswith(ALLOWED_PREFIXES)}
    # packages installed with `pip install --user` live under the user's home: still found (read-only)
    user_base = env.get("PYTHONUSERBASE") or site.getuserbase()
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUSERBASE": user_base, **extra,
            "TMPDIR": str(temp), "HOME": str(home)}


@dataclass(frozen=True)
class Sealing:
    """What one run may write (its run folder), what it sees read-only and which files it sees empty (the task's
    evaluation-only data: training gets them hidden, the evaluator does not), under which seal."""

    seal: Seal
    writable: Path
    read_only: tuple[Path, ...]
    hidden: tuple[Path, ...] = ()


def sealed_argv(argv: Sequence[str], sealing: Sealing, status_fd: int) -> list[str]:
    """argv wrapped in the seal: our init (and, with namespaces, the mounts first). Read-only and hidden paths
    that do not exist are left out; the writable folder must exist."""
    init = [sys.executable, "-I", "-S", __file__, "init", "--status-fd", str(status_fd)]
    if sealing.seal.mode == SUBREAPER:
        return [*init, "--subreaper", "--", *argv]
    init += ["--rw", str(sealing.writable)]
    for path in sealing.read_only:
        if path.exists():
            init += ["--ro", str(path)]
    for path in sealing.hidden:
        if path.exists():
            init += ["--hide", os.path.realpath(path)]  # the file itself, not a link to it
    return [*UNSHARE, "--", *init, "--", *argv]


def read_status(fd: int) -> int | None:
    """The exit code init reported on the status pipe (negative: killed by that signal); None if it never did."""
    with os.fdopen(fd, "r") as pipe:
        text = pipe.read()
    try:
        return int(json.loads(text)["exit_code"])
    except (ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------------------------
# Inside: the mounts, then init

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_RELATIME = 32, 1024, 2048, 4096, 16384, 1 << 21
# statvfs's flags of a mount → mount(2)'s: a remount in a user namespace must keep the ones it cannot clear
KEEP_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
              os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}


def _mount(source: str, target: str, flags: int, fstype: bytes | None = None, data: bytes | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype, flags, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _kept_flags(path: str) -> int:
    """The flags of path's mount that a remount in a user namespace must keep (it cannot clear them)."""
    return functools.reduce(lambda acc, kv: acc | (kv[1] if os.statvfs(path).f_flag & kv[0] else 0),
                            KEEP_FLAGS.items(), 0)


def bind(path: str, read_only: bool) -> None:
    """Bind path onto itself (with what is mounted below it), then make the new mount read-only or writable."""
    _mount(path, path, MS_BIND | MS_REC)
    _mount(path, path, MS_REMOUNT | MS_BIND | _kept_flags(path) | (MS_RDONLY if read_only else 0))


KERNEL_MOUNTS = ("/proc", "/sys", "/dev")  # left as they are: a run's /dev/null, its GPU, its /proc
SHM = "/dev/shm"


def hide(path: str) -> None:
    """Cover path with an empty read-only view: /dev/null over a file, an empty tmpfs over a folder."""
    if os.path.isdir(path):
        _mount("tmpfs", path, MS_NOSUID | MS_NODEV, b"tmpfs", b"mode=0555,size=4k")
        _mount(path, path, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY, b"tmpfs", b"mode=0555,size=4k")
    else:
        _mount("/dev/null", path, MS_BIND)
        _mount(path, path, MS_REMOUNT | MS_BIND | _kept_flags(path) | MS_RDONLY)


def seal_mounts(writable: list[str], read_only: list[str], hidden: Sequence[str] = ()) -> None:
    """The run's view: writable folders first, so the read-only binds above them carry them along (MS_REC); then
    the hidden files covered, every other mount read-only, and a private /dev/shm."""
    for path in writable:
        bind(path, read_only=False)
    for path in read_only:
        bind(path, read_only=True)
    for path in hidden:
        hide(path)
    keep = [os.path.realpath(p) for p in writable]
    for point in mount_points():
        if _within(point, keep) or _within(point, KERNEL_MOUNTS):
            continue
        try:
            _mount(point, point, MS_REMOUNT | MS_BIND | _kept_flags(point) | MS_RDONLY)
        except OSError:
            # a mount this namespace may not remount (one locked by a file bind, an autofs trigger): the paths
            # that matter were bound read-only above, which failing would have stopped the run
            continue
    if os.path.isdir(SHM):
        _mount("tmpfs", SHM, MS_NOSUID | MS_NODEV, b"tmpfs", b"mode=1777,size=50%")


def mount_points() -> list[str]:
    """Every mount point in this mount namespace, parents before children (from /proc/self/mountinfo)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:  # the mount point is octal-escaped: \040 for a space
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    return sorted(set(points), key=lambda p: (p.count("/"), p))


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def lock_mounts() -> None:
    """Enter a new user and mount namespace (still uid 0 inside): the mounts made in the parent namespace are
    locked here, so not even root in it can unmount or remount them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text("0 0 1")
    Path("/proc/self/gid_map").write_text("0 0 1")


def _descendants(root: int) -> list[int]:
    """Every live process below root (from /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _kill_descendants(pid_one: bool) -> None:
    """SIGKILL and reap everything below us until nothing is left."""
    while True:
        if pid_one:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # as PID 1: everyone else in the namespace
        else:
            for pid in _descendants(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            os.wait()
        except ChildProcessError:
            if pid_one or not _descendants(os.getpid()):
                return


def init_main(status_fd: int, subreaper: bool, writable: list[str], read_only: list[str], argv: list[str],
              hidden: Sequence[str] = ()) -> int:
    """Run argv (with mounts: sealed in them); reap whatever is orphaned meanwhile; when it ends, kill and reap
    every descendant and report its exit code on status_fd. Signals from outside (the runner's SIGTERM to the
    group) reach the command; init outlives them to clean up (SIGKILL still ends it, and with namespaces
    everything in them)."""
    os.set_inheritable(status_fd, False)
    sealed = bool(writable or read_only or hidden)
    if sealed:
        seal_mounts(writable, read_only, hidden)
        os.chdir(os.getcwd())  # the working folder again, through the new mounts (not the one now read-only)
    if subreaper:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)  # a handler, not SIG_IGN: the command gets the defaults back on exec
    pid = os.fork()
    if pid == 0:
        try:
            if sealed:
                lock_mounts()
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"sandbox: cannot run {argv[0]}: {exc}", file=sys.stderr, flush=True)
            os._exit(127)
    code = None
    while code is None:
        done, status = os.wait()
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
    _kill_descendants(pid_one=os.getpid() == 1)
    os.write(status_fd, json.dumps({"exit_code": code}).encode())
    return code if code >= 0 else 128 - code


def main(args: list[str]) -> int:
    """`init --status-fd N [--subreaper] [--rw DIR --ro PATH --hide PATH ...] -- ARGV` (ARGV may hold `--`)."""
    cut = args.index("--")
    step, options, argv = args[0], args[1:cut], args[cut + 1:]
    valued = [o for o in options if o != "--subreaper"]
    pairs = list(zip(valued[::2], valued[1::2], strict=True))
    assert step == "init", step
    status_fd = next(int(v) for k, v in pairs if k == "--status-fd")
    return init_main(status_fd, "--subreaper" in options, [v for k, v in pairs if k == "--rw"],
                     [v for k, v in pairs if k == "--ro"], argv, [v for k, v in pairs if k == "--hide"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
