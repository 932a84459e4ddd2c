"""Experiment execution: slots, the budget, the process group, metric parsing, the ledger row, the answer.

One experiment, start to end (`autoorg exp run` in-process; `exp submit` and the gate's jobs in a detached
`autoorg exp worker <id>`):

  queue_experiment   commit the worktree, refuse a diff outside the editable paths, add a `queued` ledger row
  execute            export the exact commit to runs/<id>/src, run the task's setup once per org, lease a slot,
                     run the command in its own process group (killed at budget + grace), stream runs/<id>/log and
                     metrics.jsonl, record result.json and the ledger row, let the gate screen it

Slots: each GPU agent's GPUs are one pinned slot (`gpu3`, `gpu0+1`); CPU agents share a pool of one-core slots
(`cpu0`, `cpu1`, … from `os.sched_getaffinity`), each run pinned to its core with thread limits. A slot is held by
an flock on `locks/slot-<name>.lock`; the lock's descriptor is inherited by the run, so a slot stays held while its
run lives and is freed by the OS when both the runner and the run are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoorg import ledger, workspace
from autoorg.errors import AutoorgError, RunnerError, StateError, TaskError
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.spec import OrgSpec, TaskSpec, load_org, load_task

Say = Callable[[str], None]
OVER_BUDGET_TOLERANCE = 0.02  # a run may report train_s up to 2% over its budget (timer granularity, startup)
KILL_WAIT_S = 3.0  # SIGTERM, then SIGKILL this much later
DRAIN_AFTER_EXIT_S = 2.0  # output a run's leftover children still write after it exited
DEFAULT_WAIT_S = 6 * 3600.0  # longest an experiment waits for a free slot
SETUP_TIMEOUT_S = 3 * 3600.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")


# ---------------------------------------------------------------------------------------------------------------
# The org a run belongs to


@dataclass
class OrgContext:
    """Everything a run needs to know about its org, read once from state.json, org.yaml and the task file."""

    paths: OrgPaths
    state: dict[str, Any]
    spec: OrgSpec
    task: TaskSpec

    @property
    def repo(self) -> Path:
        return Path(self.state["repo"])

    @property
    def program_branch(self) -> str:
        return str(self.state["program_branch"])

    def program_head(self) -> str:
        return workspace.rev_parse(self.repo, self.program_branch)

    @property
    def task_dir(self) -> str:
        """The task's folder relative to the repo root (commands run from a checkout's root)."""
        folder = self.task.path.parent
        try:
            return str(folder.relative_to(self.repo.resolve()))
        except ValueError:
            return str(folder)

    def worktree(self, agent: str) -> Path:
        info = self.state["agents"].get(agent)
        if info is None:
            raise StateError(f"no agent '{agent}' in org '{self.paths.tag}' "
                             f"(agents: {', '.join(self.state['agents'])})")
        return Path(info["worktree"])


def load_context(paths: OrgPaths) -> OrgContext:
    from autoorg.org import read_state

    state = read_state(paths)
    spec = load_org(str(paths.org_yaml))
    task_file = Path(state.get("task") or "")
    if not task_file.is_file():
        raise TaskError(f"the org's task file {task_file} is missing; restore it or start the org again")
    return OrgContext(paths=paths, state=state, spec=spec, task=load_task(task_file))


def current_agent(paths: OrgPaths, state: dict[str, Any]) -> str:
    """AUTOORG_AGENT in an agent's pane; else the agent whose worktree holds the current directory."""
    agent = os.environ.get("AUTOORG_AGENT")
    if agent:
        if agent not in state["agents"]:
            raise StateError(f"AUTOORG_AGENT={agent} is not an agent of org '{paths.tag}'")
        return agent
    cwd = Path.cwd().resolve()
    for name, info in state["agents"].items():
        tree = Path(info["worktree"]).resolve()
        if cwd == tree or tree in cwd.parents:
            return name
    raise RunnerError("not in an agent's worktree: run this from an agent's pane or cd into "
                      f"{paths.worktrees}/<agent>")


def org_code_hash(ctx: OrgContext) -> str:
    """Which version of the org's own code (prompts/, skills/, org.yaml) produced a row: 12 hex digits."""
    digest = hashlib.sha256()
    for folder in ("prompts", "skills"):
        root = ctx.repo / folder
        for f in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            digest.update(str(f.relative_to(ctx.repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    if ctx.paths.org_yaml.is_file():
        digest.update(ctx.paths.org_yaml.read_bytes())
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------------
# Slots


@dataclass(frozen=True)
class Slot:
    name: str  # cpu0, gpu3, gpu0+1
    cls: str  # cpu | gpu
    gpus: tuple[int, ...] = ()
    cores: tuple[int, ...] = ()

    def env(self) -> dict[str, str]:
        if self.cls == "gpu":
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}
        threads = str(len(self.cores))
        return {"CUDA_VISIBLE_DEVICES": "", **{var: threads for var in THREAD_VARS}}


def gpu_slot(gpus: list[int]) -> Slot:
    return Slot("gpu" + "+".join(map(str, gpus)), "gpu", gpus=tuple(gpus))


def cpu_slots() -> list[Slot]:
    """One slot per core this process may run on."""
    return [Slot(f"cpu{c}", "cpu", cores=(c,)) for c in sorted(os.sched_getaffinity(0))]


def org_slots(spec: OrgSpec) -> list[Slot]:
    """Every slot of an org: each GPU agent's GPUs, plus the CPU pool when an agent works on CPU."""
    slots = {gpu_slot(a.gpus).name: gpu_slot(a.gpus) for a in spec.agents if a.gpus}
    if any(a.slot_class == "cpu" for a in spec.agents):
        slots.update({s.name: s for s in cpu_slots()})
    return list(slots.values())


def agent_slots(spec: OrgSpec, agent: str) -> list[Slot]:
    """The slots an agent's own experiments may use: its GPUs, or any CPU slot."""
    a = spec.agent(agent)
    if a.gpus:
        return [gpu_slot(a.gpus)]
    if a.slot_class == "cpu":
        return cpu_slots()
    raise RunnerError(f"agent '{agent}' has no compute slots (slots: []); ask a researcher to run it, or give "
                      "the agent slots in the org spec")


def class_slots(spec: OrgSpec, cls: str, avoid: str | None = None) -> list[Slot]:
    """Slots of a class for the gate's runs, without `avoid` (the claimant's) unless it is the only one."""
    pool = [s for s in org_slots(spec) if s.cls == cls]
    if not pool:
        raise RunnerError(f"org '{spec.tag}' has no {cls} slots")
    others = [s for s in pool if s.name != avoid]
    return others or pool


def _lock_file(paths: OrgPaths, name: str) -> int:
    paths.locks.mkdir(parents=True, exist_ok=True)
    return os.open(paths.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def slot_holders(paths: OrgPaths, slots: list[Slot]) -> list[str]:
    """Who holds each slot, as written by the holder into its lock file (`cpu0: e0042 alice`)."""
    out = []
    for s in slots:
        try:
            info = json.loads((paths.locks / f"slot-{s.name}.lock").read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info:
            out.append(f"{s.name}: {info.get('exp', '?')} {info.get('agent', '')}".rstrip())
    return out


class _Queue:
    """A first-come, first-served line of waiters for a pool (`locks/<name>/`): each waiter is a ticket file named
    by its arrival time and held under flock while it waits, so a waiter that dies leaves a ticket anyone can see
    is dead (and removes). A ticket carries the slots its waiter wants."""

    def __init__(self, paths: OrgPaths, name: str, wants: list[str]) -> None:
        self.folder = paths.locks / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ticket = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}"
        tmp = self.folder / f".{self.ticket}"
        self.fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # locked before its name appears: a visible, unlocked ticket is dead
        os.write(self.fd, json.dumps(wants).encode())
        os.rename(tmp, self.folder / self.ticket)

    def taken_before_me(self) -> set[str]:
        """Slots that older waiters want: first come, first served, slot by slot (a gate run waiting for one
        busy slot does not hold up a later one that another slot would do for)."""
        return {slot for _, wants in live_tickets(self.folder, before=self.ticket) for slot in wants}

    def leave(self) -> None:
        (self.folder / self.ticket).unlink(missing_ok=True)
        os.close(self.fd)


def live_tickets(folder: Path, before: str | None = None) -> list[tuple[str, list[str]]]:
    """(ticket, wanted slots) of every waiter still alive in a queue folder (only those older than `before`
    when given); dead waiters' tickets are removed."""
    out = []
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and (before is None or n < before))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            fd = os.open(folder / name, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(fd):  # nobody holds it: its waiter is gone
                (folder / name).unlink(missing_ok=True)
                continue
            try:
                wants = json.loads(os.pread(fd, 65536, 0) or b"[]")
            except ValueError:
                wants = ["*"]
            out.append((name, list(wants)))
        finally:
            os.close(fd)
    return out


def _gate_wants(paths: OrgPaths, cls: str) -> set[str]:
    """Slots that waiting gate runs want (an agent's run leaves those to them)."""
    return {slot for _, wants in live_tickets(paths.locks / f"gate-queue-{cls}") for slot in wants}


@contextlib.contextmanager
def lease_slot(paths: OrgPaths, slots: list[Slot], *, holder: dict[str, Any], wait_s: float = DEFAULT_WAIT_S,
               say: Say | None = None, gate: bool = False) -> Iterator[tuple[Slot, int]]:
    """Hold one free slot of `slots` (yields the slot and its locked descriptor); waits while all are busy.

    Waiters line up first come, first served (`locks/queue-<cls>/` for agents sharing a pool,
    `locks/gate-queue-<cls>/` for the gate's runs): a waiter polls (every 10 ms, so a freed slot is taken at once)
    only the slots no older waiter wants, so no agent is passed over. The gate's runs come first: an agent's run
    leaves alone the slots a waiting gate run wants. Raises RunnerError after wait_s.
    """
    cls = slots[0].cls
    name = f"gate-queue-{cls}" if gate else (f"queue-{cls}" if len(slots) > 1 else None)
    line = _Queue(paths, name, [s.name for s in slots]) if name else None
    deadline = time.monotonic() + wait_s
    told = False
    try:
        while True:
            leave = line.taken_before_me() if line is not None else set()
            if not gate:
                leave |= _gate_wants(paths, cls)
            mine = [] if "*" in leave else [s for s in slots if s.name not in leave]
            if mine:
                for slot in mine:
                    fd = _lock_file(paths, f"slot-{slot.name}")
                    if _try_lock(fd):
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, json.dumps({**holder, "slot": slot.name, "pid": os.getpid(),
                                                  "since": ledger.now_iso()}).encode(), 0)
                        if line is not None:
                            line.leave()
                            line = None
                        try:
                            yield slot, fd
                        finally:
                            with contextlib.suppress(OSError):
                                os.ftruncate(fd, 0)
                            os.close(fd)
                        return
                    os.close(fd)
            if not told and say is not None:
                busy = "; ".join(slot_holders(paths, slots)) or "starting up"
                say(f"all {len(slots)} slot(s) busy ({busy}); waiting for one")
                told = True
            if time.monotonic() > deadline:
                raise RunnerError(f"no free slot after {wait_s:.0f}s (busy: {'; '.join(slot_holders(paths, slots))})")
            # Polled often only while a slot could be ours; otherwise an older waiter is ahead for all of them.
            time.sleep(0.01 if mine else 0.25)
    finally:
        if line is not None:
            line.leave()


# ---------------------------------------------------------------------------------------------------------------
# What a run may change


def _matches(path: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    pattern = pattern.strip("/") if pattern not in ("", "/") else ""
    return path == pattern or path.startswith(pattern + "/") or fnmatchcase(path, pattern)


def boundary_violations(task: TaskSpec, changed: list[str]) -> list[str]:
    """Changed paths an agent may not touch, each with why: `tiny/task.yaml (protected)`."""
    bad = []
    for p in changed:
        if any(_matches(p, pat) for pat in task.protected):
            bad.append(f"{p} (protected)")
        elif not any(_matches(p, pat) for pat in task.editable):
            bad.append(f"{p} (not editable)")
    return bad


# ---------------------------------------------------------------------------------------------------------------
# Queueing


def queue_run(ctx: OrgContext, *, kind: str, agent: str, commit: str, head: str, description: str, seed: int,
              budget: float, slot_class: str, candidate: str | None = None, **extra: Any) -> str:
    """Add a queued ledger row and runs/<id>/ with the diff against the program head; returns the id.
    `extra`: more columns (an agent's token use so far)."""
    repo = ctx.repo
    standard = budget == ctx.task.budget[slot_class]
    exp = ledger.add_experiment(ctx.paths, {
        "kind": kind, "agent": agent, "task": ctx.task.name, "commit_sha": commit,
        "tree": workspace.tree_of(repo, commit), "parent": workspace.parent_of(repo, commit), "head": head,
        "diff_stat": workspace.diff_stat(repo, head, commit), "description": description, "seed": seed,
        "budget": budget, "standard": int(standard), "slot_class": slot_class, "org_code": org_code_hash(ctx),
        "candidate": candidate, **extra,
    })
    run_dir = ctx.paths.runs / exp
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "diff.patch", workspace.diff_text(repo, head, commit))
    return exp


def new_seed() -> int:
    return secrets.randbelow(2**31 - 1) + 1


def queue_experiment(ctx: OrgContext, agent: str, description: str, *, budget: float | None = None,
                     seed: int | None = None) -> str:
    """Commit an agent's pending changes and queue them as an experiment. Refuses (committing nothing) a change
    whose diff against the program head touches protected paths or paths outside the editable set."""
    description = " ".join(description.split())
    if not description:
        raise RunnerError('say what changed: autoorg exp run -m "what changed"')
    slots = agent_slots(ctx.spec, agent)
    cls = slots[0].cls
    if cls not in ctx.task.run:
        raise TaskError(f"task '{ctx.task.name}' has no run command for {cls} slots "
                        f"(it has: {', '.join(ctx.task.run)}); add run.{cls} to {ctx.task.path}")
    if budget is not None and not budget > 0:
        raise RunnerError(f"--budget must be a positive number of seconds, not {budget}")
    worktree = ctx.worktree(agent)
    if not worktree.is_dir():
        raise StateError(f"agent {agent}'s worktree {worktree} is gone; `autoorg up` the org again")
    head = ctx.program_head()
    tracked, untracked = workspace.pending_paths(worktree)
    # New files outside the editable paths (caches, outputs, notes) are not part of the change: left alone.
    new_files = [p for p in untracked if not boundary_violations(ctx.task, [p])]
    changed = set(tracked) | set(new_files) | set(workspace.changed_paths(worktree, head, "HEAD"))
    bad = boundary_violations(ctx.task, sorted(changed))
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise RunnerError(f"refused: the change touches paths agents may not edit: {shown}; editable: "
                          f"{', '.join(ctx.task.editable)}. Restore them (git checkout {ctx.program_branch} -- "
                          "PATH) and run again; nothing was committed")
    commit = (workspace.commit_paths(worktree, [*tracked, *new_files], description, author=agent)
              or workspace.head_commit(worktree))
    return queue_run(ctx, kind="exp", agent=agent, commit=commit, head=head, description=description,
                     seed=new_seed() if seed is None else seed,
                     budget=ctx.task.budget[cls] if budget is None else float(budget), slot_class=cls,
                     **agent_spend(ctx.paths, agent))


def agent_spend(paths: OrgPaths, agent: str) -> dict[str, Any]:
    """The agent's tokens and cost so far (its CLI's records read first): stored with each experiment it asks
    for, so the ledger says what every experiment cost in model calls. Empty for agents without model calls."""
    from autoorg import usage  # usage reads agent homes (roles); the runner needs it only here

    usage.refresh(paths, agent)
    total = ledger.usage_totals(paths).get(agent)
    if total is None:
        return {}
    tokens = sum(total[c] for c in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"))
    return {"agent_tokens": tokens, "agent_cost_usd": total["cost_usd"]}


def spawn_worker(paths: OrgPaths, exp: str) -> int:
    """Run a queued experiment in a detached `autoorg exp worker <id>` (its output: runs/<id>/runner.log)."""
    log = open(paths.runs / exp / "runner.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "worker", exp], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "AUTOORG_HOME": str(paths.home)})
    finally:
        log.close()
    ledger.update_experiment(paths, exp, pid=proc.pid, pid_start=process_start(proc.pid))
    return proc.pid


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a live runner from a reused pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def runner_alive(row: dict[str, Any]) -> bool:
    pid = row.get("pid")
    if not pid:
        return True  # not started yet: the queuer records the pid right after spawning
    start = process_start(int(pid))
    return start is not None and (row.get("pid_start") in (None, start))


def _is_worker(pid: int, exp: str) -> bool:
    """Is pid the detached `autoorg exp worker <exp>` of this experiment (and not a pane's own runner)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"worker" in argv and exp.encode() in argv


def cancel_runs(paths: OrgPaths, exps: list[str], why: str = "cancelled") -> list[str]:
    """Stop queued or running experiments that run in detached workers: the ledger says `why` first (so the
    worker's own crash record does not replace it), then the worker gets SIGTERM (it kills its run's process
    group). Runs of an agent's own `exp run` are left to it. Returns the experiments stopped."""
    rows = {exp: ledger.get_experiment(paths, exp) for exp in exps}
    stopped = ledger.claim_many(paths, exps, why, finished=ledger.now_iso(), pid=None)
    for exp in stopped:
        pid = rows[exp].get("pid")
        if pid and runner_alive(rows[exp]) and _is_worker(int(pid), exp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    return stopped


def stop_runs(paths: OrgPaths) -> list[str]:
    """Stop every detached run of an org (for `autoorg down`): queued and running ones, gate runs included."""
    rows = [r for v in ledger.UNFINISHED for r in ledger.experiments(paths, verdict=v)]
    return cancel_runs(paths, [r["exp"] for r in rows if r["pid"] and _is_worker(int(r["pid"]), r["exp"])],
                       "cancelled: the org was stopped")


# ---------------------------------------------------------------------------------------------------------------
# Metrics


_PLAIN = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*:\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|nan|inf))\s*$")


def parse_metric_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """`@metric {json}` → ("metric", dict); a plain `name: number` line → ("plain", {name: value})."""
    if line.startswith("@metric "):
        try:
            data = json.loads(line[len("@metric "):])
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


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a run is on its slot: handled like Ctrl-C (the run's group is killed, the CLI exits
    130 without a traceback)."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
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
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def run_command(command: str, *, cwd: Path, env: dict[str, str], limit_s: float, log_path: Path,
                metrics_path: Path, keep_fd: int | None = None, cores: tuple[int, ...] = (),
                on_started: Callable[[], None] | None = None, times: dict[str, float] | None = None) -> Outcome:
    """Run command (sh -c) in its own process group; stream its output to log_path and @metric lines to
    metrics_path; kill the group at limit_s. The slot's lock descriptor (keep_fd) is inherited by the run;
    on_started is called once it is running. `times` (spawned, first_metric, exited) is filled as they happen,
    so a caller has them even when the run is interrupted."""
    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, cores)

    outcome = Outcome(exit_code=None, killed=None, wall_s=0.0, maxrss_gb=None,
                      times=times if times is not None else {})
    with open(log_path, "ab") as log, open(metrics_path, "a", encoding="utf-8") as metrics, _signals_interrupt():
        start = time.monotonic()
        outcome.times["spawned"] = time.time()
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(keep_fd,) if keep_fd is not None else (),
                                preexec_fn=pin if cores else None)  # noqa: PLW1509 - only a syscall
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

        try:
            if on_started is not None:
                on_started()
            while True:
                if time.monotonic() - start > limit_s and outcome.killed is None:
                    outcome.killed = "over budget"
                    _kill_group(proc.pid, reap)
                reap()
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


# ---------------------------------------------------------------------------------------------------------------
# Setup, once per org


def substitute(command: str, *, budget: float, seed: int, task_dir: str) -> str:
    """Fill {python} {budget} {seed} {task_dir} (and nothing else: other braces stay as written)."""
    values = {"{python}": shlex.quote(sys.executable), "{budget}": f"{budget:g}", "{seed}": str(seed),
              "{task_dir}": shlex.quote(task_dir)}
    for key, value in values.items():
        command = command.replace(key, value)
    return command


def ensure_setup(ctx: OrgContext, cwd: Path, say: Say | None = None) -> None:
    """Run the task's setup command once per org (lock + marker holding the command that ran)."""
    setup = ctx.task.setup
    if not setup:
        return
    marker = ctx.paths.home / "setup.done"
    command = substitute(setup, budget=0, seed=0, task_dir=ctx.task_dir)
    if marker.is_file() and marker.read_text() == command:
        return
    fd = _lock_file(ctx.paths, "setup")
    try:
        if not _try_lock(fd):
            if say:
                say("waiting for the task's setup (another process is running it)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == command:
            return
        if say:
            say(f"running the task's setup once for this org: {setup}")
        ctx.paths.logs.mkdir(parents=True, exist_ok=True)
        log = ctx.paths.logs / "setup.log"
        out = run_command(command, cwd=cwd, env=_run_env({}), limit_s=SETUP_TIMEOUT_S, log_path=log,
                          metrics_path=ctx.paths.logs / "setup.metrics.jsonl")
        if out.killed or out.exit_code != 0:
            why = out.killed or f"exit {out.exit_code}"
            raise TaskError(f"the task's setup failed ({why}); see {log}: {_last_line(log)}")
        atomic_write_text(marker, command)
    finally:
        os.close(fd)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else "(no output)"


def _run_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


# ---------------------------------------------------------------------------------------------------------------
# Executing a queued experiment


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def judge_outcome(task: TaskSpec, out: Outcome, budget: float, standard: bool,
                  kind: str) -> tuple[str, dict[str, Any] | None, float | None]:
    """(verdict, final metrics, metric value) of a finished command. Crashes say why."""
    finals = final_metrics(out.metric_lines, out.plain, task.metric)
    if out.killed == "over budget":
        return f"crash: over budget (killed at {budget + task.grace:g}s = budget + grace)", finals, None
    if out.killed:
        return f"crash: {out.killed}", finals, None
    if out.exit_code != 0:
        why = f"exit {out.exit_code}"
        if out.exit_code == 127:
            why += " (command not found)"
        elif out.exit_code is not None and out.exit_code < 0:
            why = f"killed by {signal.Signals(-out.exit_code).name}"
        return f"crash: {why}", finals, None
    if finals is None or task.metric not in finals:
        return f"crash: metric never printed (no final {task.metric})", finals, None
    try:
        value = float(finals[task.metric])
    except (TypeError, ValueError):
        return f"crash: {task.metric} is not a number ({finals[task.metric]!r})", finals, None
    if not math.isfinite(value):
        return f"crash: {task.metric} is {value}", finals, None
    train_s = finals.get("train_s")
    if isinstance(train_s, int | float) and train_s > budget * (1 + OVER_BUDGET_TOLERANCE):
        return f"over budget (train_s {train_s:.1f} > budget {budget:g})", finals, value
    if kind != "exp":
        return "ok", finals, value
    return ("measured" if standard else "off-budget"), finals, value


def execute(ctx: OrgContext, exp: str, *, say: Say | None = None, wait_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
    """Run a queued experiment to its end and record it; returns its ledger row (with gate's screening)."""
    paths = ctx.paths
    row = ledger.get_experiment(paths, exp)
    if row["verdict"] != "queued":
        raise RunnerError(f"experiment {exp} is not queued (verdict: {row['verdict']})")
    ledger.update_experiment(paths, exp, pid=os.getpid(), pid_start=process_start(os.getpid()))
    times = {"invoked": time.time()}
    run_dir = paths.runs / exp
    src = run_dir / "src"
    try:
        workspace.export_tree(ctx.repo, row["commit_sha"], src)
        ensure_setup(ctx, src, say)
        if row["kind"] == "exp":
            slots = agent_slots(ctx.spec, row["agent"])
        else:
            avoid = ledger.get_experiment(paths, row["candidate"])["slot"] if row["candidate"] else None
            slots = class_slots(ctx.spec, row["slot_class"], avoid)
        command = ctx.task.run.get(row["slot_class"])
        if not command:
            raise TaskError(f"task '{ctx.task.name}' has no run command for {row['slot_class']} slots")
        command = substitute(command, budget=row["budget"], seed=row["seed"], task_dir=ctx.task_dir)
        holder = {"exp": exp, "agent": row["agent"], "kind": row["kind"]}
        before: list[str | None] = [None]

        def on_started(slot: Slot) -> None:
            # after the spawn, not before: a freed slot goes straight back to work
            ledger.claim_unfinished(paths, exp, "running", slot=slot.name, started=_iso(times["leased"]))
            before[0] = _set_running(ctx, row, slot)
            if say:
                say(f"{exp} on {slot.name}: {command}  (budget {row['budget']:g}s, log {run_dir / 'log'})")

        times["lease_wait"] = time.time()
        try:
            with lease_slot(paths, slots, holder=holder, wait_s=wait_s, say=say, gate=row["kind"] != "exp") \
                    as (slot, fd):
                times["leased"] = time.time()
                if ledger.get_experiment(paths, exp)["verdict"] != "queued":
                    return ledger.get_experiment(paths, exp)  # cancelled while it waited: the slot goes back
                env = _run_env({**slot.env(), "AUTOORG_EXP": exp, "AUTOORG_SEED": str(row["seed"]),
                                "AUTOORG_BUDGET": f"{row['budget']:g}"})
                out = run_command(command, cwd=src, env=env, limit_s=row["budget"] + ctx.task.grace,
                                  log_path=run_dir / "log", metrics_path=run_dir / "metrics.jsonl", keep_fd=fd,
                                  cores=slot.cores, on_started=functools.partial(on_started, slot), times=times)
        finally:
            _restore_status(ctx, row, before[0])
    except KeyboardInterrupt:
        _finish_crash(ctx, exp, "crash: interrupted", times)
        raise
    except AutoorgError as exc:
        _finish_crash(ctx, exp, f"crash: {exc}", times)
        raise
    finally:
        shutil.rmtree(src, ignore_errors=True)
    verdict, finals, value = judge_outcome(ctx.task, out, row["budget"], row["standard"], row["kind"])
    memory = (finals or {}).get("memory_gb", out.maxrss_gb)
    fields = {"metric": value, "metrics": finals or {}, "wall_s": round(out.wall_s, 3),
              "train_s": (finals or {}).get("train_s"), "memory_gb": memory, "exit_code": out.exit_code,
              "finished": _iso(out.times.get("exited")), "pid": None}
    if not ledger.claim_unfinished(paths, exp, verdict, **fields):
        final = ledger.get_experiment(paths, exp)  # cancelled while it ran: that verdict stands
        _write_result_json(ctx, final, times)
        return final
    if row["kind"] == "exp" and verdict == "measured":
        from autoorg import gate

        gate.screen(ctx, exp)
        gate.publish_board(ctx)
    ledger.write_results_tsv(paths, ctx.task.metric)
    final = ledger.get_experiment(paths, exp)
    times["recorded"] = time.time()
    _write_result_json(ctx, final, times)
    return final


def _finish_crash(ctx: OrgContext, exp: str, verdict: str, times: dict[str, float]) -> None:
    """Record a run that could not finish (unless the gate cancelled it meanwhile: that verdict stays)."""
    with contextlib.suppress(AutoorgError):
        if ledger.claim_unfinished(ctx.paths, exp, verdict[:500], finished=ledger.now_iso(), pid=None):
            ledger.write_results_tsv(ctx.paths, ctx.task.metric)
        _write_result_json(ctx, ledger.get_experiment(ctx.paths, exp), times)


def _write_result_json(ctx: OrgContext, row: dict[str, Any], times: dict[str, float]) -> None:
    result = {k: row[k] for k in ("exp", "kind", "agent", "task", "commit_sha", "parent", "head", "tree", "seed",
                                  "budget", "slot_class", "slot", "verdict", "metric", "metrics", "wall_s",
                                  "train_s", "memory_gb", "exit_code", "description", "diff_stat", "org_code",
                                  "candidate", "queued", "started", "finished")}
    result["metric_name"] = ctx.task.metric
    result["log"] = str(ctx.paths.runs / row["exp"] / "log")
    result["times"] = {k: round(v, 4) for k, v in times.items()}
    atomic_write_text(ctx.paths.runs / row["exp"] / "result.json", json.dumps(result, indent=2) + "\n")


def _set_running(ctx: OrgContext, row: dict[str, Any], slot: Slot) -> str | None:
    """Mark the agent `running` while its experiment is on a slot; returns the state to go back to."""
    if row["kind"] != "exp":
        return None
    from autoorg import comms

    try:
        old = comms.read_status(ctx.paths, row["agent"])
        comms.report_status(ctx.paths, row["agent"], "running", f"{row['exp']} on {slot.name}")
    except AutoorgError:
        return None
    state = (old or {}).get("state")
    return state if state and state != "running" else "working"


def _restore_status(ctx: OrgContext, row: dict[str, Any], before: str | None) -> None:
    """Back to the state before the run, unless the agent reported something else meanwhile."""
    if before is None:
        return
    from autoorg import comms

    with contextlib.suppress(AutoorgError):
        comms.swap_status(ctx.paths, row["agent"], "running", before)


# ---------------------------------------------------------------------------------------------------------------
# The answer an agent reads


def answer(ctx: OrgContext, row: dict[str, Any]) -> str:
    """A few lines: the metric, the delta to the program head's mean, the noise band, and what happens next."""
    from autoorg import gate

    metric, verdict, exp = ctx.task.metric, row["verdict"], row["exp"]
    log = ctx.paths.runs / exp / "log"
    where = f"{row['slot'] or '-'}, seed {row['seed']}, {row['wall_s'] or 0:.1f}s"
    if verdict.startswith("crash"):
        return (f"{exp} ({row['description']}): {verdict}\n  log kept: {log}\n  last line: {_last_line(log)}\n"
                f"  → nothing was compared; fix it and run again")
    lines = [f"{exp} ({row['description']}): {metric} {row['metric']:.6g}  [{where}]"]
    if row["ref_mean"] is not None:
        sigma = f", σ {row['sigma']:.3g}" if row["sigma"] is not None else ""
        better = gate.improvement(ctx.task, row["metric"], row["ref_mean"]) > 0
        band = f"; noise band {row['band']:.3g}" if row["band"] is not None else ""
        lines.append(f"  program head {row['ref_head'][:10]}: mean {row['ref_mean']:.6g} over {row['ref_n']} runs"
                     f"{sigma} · delta {row['delta']:+.4g} ({'better' if better else 'not better'}){band}")
    st = gate.settings(ctx.spec)
    nxt = {
        "candidate": f"candidate: queued for verification ({st.repeats} re-runs with other seeds on other slots); "
                     "the gate's decision arrives as a message",
        "no gain": "no gain: not better than the head by more than the noise band",
        "same as head": "same code as the program head: this run counts towards the head's mean",
        "pending": f"no baseline for the program head yet ({row['ref_n'] or 0} of {st.baseline_repeats} runs); "
                   "the gate screens this run when it lands",
        "off-budget": f"ran with --budget {row['budget']:g} (the task's is {ctx.task.budget[row['slot_class']]:g}): "
                      "recorded, not compared",
    }.get(verdict, verdict)
    if verdict.startswith("over budget"):
        nxt = f"{verdict}: not compared; a run must train within the budget"
    lines.append(f"  → {nxt}")
    head = ctx.program_head()
    if row["kind"] == "exp" and row["head"] != head:
        lines.append(f"  note: {ctx.program_branch} moved to {head[:10]} since; bring your branch up to date "
                     f"(git merge {ctx.program_branch})")
    return "\n".join(lines)
