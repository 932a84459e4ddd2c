"""Running one command under a time limit: its own process group, its output streamed to a log, its metric lines
parsed (`@metric {json}`, or autoresearch's `name: value`), the whole group killed at the limit or on a signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from autoorg.experiments.sandbox import Sealing, read_status, sealed_argv

KILL_WAIT_S = 3.0  # SIGTERM, then SIGKILL this much later
DRAIN_AFTER_EXIT_S = 2.0  # output a run's leftover children still write after it exited
# How often a pinned run's threads are checked for having left their slot's cores: a run that widens its affinity
# can burn CPU on a same-seed pair's other arm (slowing the head it is compared with, under a wall-clock budget)
# while its own process tree stays inside its CPU-s allowance; to steal seconds it must spend many watches there.
WATCH_S = 0.5
RUN_MARKER = "AUTOORG_RUN"  # in a run's environment (its run folder): finds its processes after its runner died
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: a forked child only makes the syscall


_PLAIN = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*:\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|nan|inf))\s*$")


class Unrepresentable(str):
    """A JSON number no float holds (1e-999 underflows to 0, 1e999 overflows): kept as its text, never a number."""


def _json_number(text: str) -> float | Unrepresentable:
    value = float(text)
    mantissa = text.lower().split("e")[0]
    if math.isinf(value) or (value == 0.0 and any(c in "123456789" for c in mantissa)):
        return Unrepresentable(text)
    return value


def parse_metric_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """`@metric {json}` → ("metric", dict); a plain `name: number` line → ("plain", {name: value})."""
    if line.startswith("@metric "):
        try:
            data = json.loads(line[len("@metric "):], parse_float=_json_number)
        except ValueError:
            return None
        return ("metric", data) if isinstance(data, dict) else None
    m = _PLAIN.match(line)
    if m:
        return "plain", {m[1]: float(m[2])}
    return None


def final_metrics(metric_lines: list[dict[str, Any]], plain: dict[str, float], metric: str) -> dict[str, Any] | None:
    """The final metrics of a run: its last `"final": true` line, else autoresearch-style plain lines that name
    the task's metric. Common names are mapped to ours (train_s, steps, tokens, memory_gb from peak_vram_mb or
    peak_mem_mb)."""
    finals = [m for m in metric_lines if m.get("final")]
    if finals:
        out = dict(finals[-1])
    elif metric in plain:
        out = dict(plain)
    else:
        return None
    aliases = {"training_seconds": "train_s", "num_steps": "steps"}
    for old, new in aliases.items():
        if old in out and new not in out:
            out[new] = out[old]
    if "total_tokens_M" in out and "tokens" not in out:
        out["tokens"] = float(out["total_tokens_M"]) * 1e6
    for name in ("peak_vram_mb", "peak_mem_mb"):
        if name in out and "memory_gb" not in out:
            out["memory_gb"] = float(out[name]) / 1024
    return out


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a live runner from a reused pid)."""
    fields = _stat(pid)
    return fields[19] if fields else None


def exited(pid: int) -> bool:
    """Has the process exited, its parent not yet reaped it (a zombie)?"""
    fields = _stat(pid)
    return fields is not None and fields[0] in ("Z", "X")


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else "(no output)"


# ---------------------------------------------------------------------------------------------------------------
# Running one command under the budget


@dataclass
class Outcome:
    exit_code: int | None
    killed: str | None  # over budget | interrupted
    wall_s: float
    maxrss_gb: float | None
    metric_lines: list[dict[str, Any]] = field(default_factory=list)
    plain: dict[str, float] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)  # spawned, first_metric, exited (epoch seconds)
    cpu_s: float | None = None  # user + system CPU of the process tree the kernel accounted to us
    sealed: str | None = None  # namespaces | subreaper (sealed runs only)
    strayed: str | None = None  # a thread of the run left its slot's cores (it was killed then): where


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a run is on its slot: handled like Ctrl-C (the run's group is killed, the CLI exits
    130 without a traceback)."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP become an exception while a run is on its slot (main thread only), so its group is killed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _kill_group(pgid: int, reap: Callable[[], object]) -> None:
    """SIGTERM the process group, SIGKILL what is left after KILL_WAIT_S. reap() collects our own child as soon
    as it exits: an unreaped child still counts as a member of the group."""
    for sig, wait in ((signal.SIGTERM, KILL_WAIT_S), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            reap()
            if not _group_alive(pgid):
                return
            time.sleep(0.02)


def strayed(root: int, cores: tuple[int, ...]) -> str | None:
    """Where a thread of the process tree at `root` left `cores`: it may run on another core (its affinity was
    widened or moved) or it last ran on one. None while every thread keeps to them (or the tree is gone)."""
    allowed = set(cores)
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return None
    for proc in tree:
        try:
            tids = [t.id for t in proc.threads()]
        except psutil.Error:
            continue  # exited since
        for tid in tids:
            try:
                task = psutil.Process(tid)
                mask, last = set(task.cpu_affinity()), task.cpu_num()
                name = proc.name()
            except psutil.Error:
                continue
            if last not in allowed or not mask <= allowed:
                where = ", ".join(map(str, sorted(mask)))
                return (f"left its slot's cores ({', '.join(map(str, cores))}): process {proc.pid} ({name}), "
                        f"thread {tid}, may run on cores {where} and last ran on core {last}")
    return None


def _die_with_parent() -> None:
    """In a run's shell, between fork and exec: SIGKILL when the runner dies (it survives the exec of the training
    command; what that starts is found by RUN_MARKER)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_processes(marker: str) -> list[int]:
    """Live processes whose environment says RUN_MARKER=marker: a run and everything it started, whichever
    process group or session they moved to."""
    needle = f"{RUN_MARKER}={marker}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()  # a zombie's is empty
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(name))
    return pids


def kill_run(marker: str, wait_s: float = 5.0) -> list[int]:
    """SIGKILL every process of a run (RUN_MARKER=marker) until none is left or wait_s passed; returns the pids
    killed. For a run whose runner is gone: nothing else enforces its budget any more."""
    killed: list[int] = []
    end = time.monotonic() + wait_s
    while True:
        pids = run_processes(marker)
        if not pids or time.monotonic() > end:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Does the process group still have a member that is not a zombie? (Orphaned zombies wait for init to reap
    them, which some inits do only every second or two; they hold nothing, a slot included.)"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for name in entries:
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def run_command(command: str, *, cwd: Path, env: dict[str, str], limit_s: float, log_path: Path,
                metrics_path: Path, keep_fds: tuple[int, ...] = (), cores: tuple[int, ...] = (),
                on_started: Callable[[], None] | None = None, times: dict[str, float] | None = None,
                sealing: Sealing | None = None) -> Outcome:
    """Run command (sh -c) in its own process group, killed if this process dies; stream its output to log_path
    and @metric lines to metrics_path; kill the group at limit_s. The slot's device lock descriptors (keep_fds) are
    inherited by the run; on_started is called once it is running. `times` (spawned, first_metric, exited) is
    filled as they happen, so a caller has them even when the run is interrupted. With `sealing` the command runs
    sealed (sandbox.py): every process it starts dies with it and cpu_s counts them all. With `cores` it is pinned
    to them, and every WATCH_S its threads are checked: one that left them (`strayed`) gets the group killed and
    says where in `outcome.strayed`."""
    def in_child() -> None:
        _die_with_parent()
        if cores:
            os.sched_setaffinity(0, cores)

    outcome = Outcome(exit_code=None, killed=None, wall_s=0.0, maxrss_gb=None,
                      times=times if times is not None else {})
    with open(log_path, "ab") as log, open(metrics_path, "a", encoding="utf-8") as metrics, signals_interrupt():
        start = time.monotonic()
        outcome.times["spawned"] = time.time()
        argv = ["/bin/sh", "-c", command]
        status_r = status_w = None
        if sealing is not None:
            status_r, status_w = os.pipe()
            argv = sealed_argv(argv, sealing, status_w)
            outcome.sealed = sealing.seal.mode
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=(*keep_fds, *([status_w] if status_w is not None else [])),
                                    preexec_fn=in_child)  # noqa: PLW1509 - only syscalls
        finally:
            if status_w is not None:
                os.close(status_w)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        exited_at: list[float] = []

        def reap(block: bool = False) -> None:
            if exited_at:
                return
            try:
                pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                exited_at.append(time.monotonic())
                proc.returncode = outcome.exit_code = os.waitstatus_to_exitcode(status)
                outcome.wall_s = exited_at[0] - start
                outcome.times["exited"] = time.time()
                outcome.maxrss_gb = usage.ru_maxrss / 1e6  # KiB → GB
                outcome.cpu_s = usage.ru_utime + usage.ru_stime

        next_watch = start + WATCH_S
        try:
            if on_started is not None:
                on_started()
            while True:
                if time.monotonic() - start > limit_s and outcome.killed is None:
                    outcome.killed = "over budget"
                    _kill_group(proc.pid, reap)
                reap()
                if cores and not exited_at and outcome.strayed is None and time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCH_S
                    outcome.strayed = strayed(proc.pid, cores)
                    if outcome.strayed is not None:
                        _kill_group(proc.pid, reap)
                if exited_at and time.monotonic() - exited_at[0] > DRAIN_AFTER_EXIT_S:
                    break  # leftover children hold the pipe open: they are killed below
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    if exited_at:
                        break
                    continue
                log.write(chunk)
                log.flush()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    _take_line(raw.decode("utf-8", errors="replace").rstrip("\r"), outcome, metrics)
        except KeyboardInterrupt:
            outcome.killed = "interrupted"
            raise
        finally:
            _kill_group(proc.pid, reap)
            reap(block=True)
            if not exited_at:  # reaped elsewhere: no status, but the time it took
                outcome.wall_s = time.monotonic() - start
                outcome.times["exited"] = time.time()
            if buffer:
                _take_line(buffer.decode("utf-8", errors="replace"), outcome, metrics)
            proc.stdout.close()
            if status_r is not None:
                reported = read_status(status_r)  # the command's own exit, not our init's
                if reported is not None and outcome.exit_code is not None:
                    proc.returncode = outcome.exit_code = reported
    return outcome


def _take_line(line: str, outcome: Outcome, metrics: Any) -> None:
    parsed = parse_metric_line(line)
    if parsed is None:
        return
    what, data = parsed
    if what == "metric":
        outcome.times.setdefault("first_metric", time.time())
        outcome.metric_lines.append(data)
        metrics.write(json.dumps(data, sort_keys=True) + "\n")
        metrics.flush()
    else:
        outcome.plain.update(data)
