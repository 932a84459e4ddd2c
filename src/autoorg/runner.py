"""Experiment execution: queueing, the budget, the ledger row, the answer.

One experiment, start to end (`autoorg exp run` in-process; `exp submit` and the gate's jobs in a detached
`autoorg exp worker <id>`):

  queue_experiment   commit the worktree, refuse a diff outside the editable paths, add a `queued` ledger row
  execute            export the exact commit to runs/<id>/src, run the task's setup once per org, lease a slot
                     (slots.py), run the command in its own process group killed at budget + grace (process.py),
                     stream runs/<id>/log and metrics.jsonl, record result.json and the ledger row, let the gate
                     screen it
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoorg import ledger, workspace
from autoorg.errors import AutoorgError, RunnerError, StateError, TaskError
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.process import Outcome, final_metrics, run_command
from autoorg.slots import DEFAULT_WAIT_S, Say, Slot, agent_slots, class_slots, lease_slot, lock_file, try_lock
from autoorg.spec import OrgSpec, TaskSpec, load_org, load_task

OVER_BUDGET_TOLERANCE = 0.02  # a run may report train_s up to 2% over its budget (timer granularity, startup)
SETUP_TIMEOUT_S = 3 * 3600.0


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
    fd = lock_file(ctx.paths, "setup")
    try:
        if not try_lock(fd):
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
