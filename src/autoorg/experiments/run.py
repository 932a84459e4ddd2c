"""Experiment execution: the task's setup once per org, a slot, the command under its budget, the ledger row.

  execute  export the exact commit to runs/<id>/src, run the task's setup once per org, lease a slot
           (compute/slots.py), run the command in its own process group killed at budget + grace (process.py),
           stream runs/<id>/log and metrics.jsonl, record result.json and the ledger row, then hand the row to
           `on_recorded` (the gate screens it)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoorg import clock, comms, workspace
from autoorg.compute.slots import (
    DEFAULT_WAIT_S,
    Slot,
    agent_slots,
    class_slots,
    lease_slot,
    lock_file,
    try_lock,
)
from autoorg.environment import without_secrets
from autoorg.errors import AutoorgError, RunnerError, Say, TaskError
from autoorg.experiments import ledger
from autoorg.experiments.context import OrgContext
from autoorg.experiments.process import (
    RUN_MARKER,
    Outcome,
    final_metrics,
    kill_run,
    process_start,
    run_command,
)
from autoorg.paths import atomic_write_text
from autoorg.spec import TaskSpec

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
            raise TaskError(f"the task's setup failed ({why}); see {log}: {last_line(log)}")
        atomic_write_text(marker, command)
    finally:
        os.close(fd)


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else "(no output)"


def _run_env(extra: dict[str, str]) -> dict[str, str]:
    """The runner's environment less its secrets (an agent's key never reaches training code) and less another
    run's marker."""
    env = without_secrets(os.environ)
    env.pop(RUN_MARKER, None)
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}

OVER_BUDGET_TOLERANCE = 0.02  # a run may report train_s up to 2% over its budget (timer granularity, startup)
SETUP_TIMEOUT_S = 3 * 3600.0


# ---------------------------------------------------------------------------------------------------------------
# Executing a queued experiment


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


def execute(ctx: OrgContext, exp: str, *, say: Say | None = None, wait_s: float = DEFAULT_WAIT_S,
            on_measured: Callable[[OrgContext, str], None] | None = None) -> dict[str, Any]:
    """Run a queued experiment to its end and record it; returns its ledger row. `on_measured` sees an agent's
    measured experiment before results.tsv and result.json are written (the gate screens it there)."""
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
            ledger.claim_unfinished(paths, exp, "running", slot=slot.name, started=clock.iso_of_epoch(times["leased"]))
            before[0] = _set_running(ctx, row, slot)
            if say:
                say(f"{exp} on {slot.name}: {command}  (budget {row['budget']:g}s, log {run_dir / 'log'})")

        times["lease_wait"] = time.time()
        try:
            with lease_slot(paths, slots, holder=holder, wait_s=wait_s, say=say, gate=row["kind"] != "exp") \
                    as (slot, fds):
                times["leased"] = time.time()
                if ledger.get_experiment(paths, exp)["verdict"] != "queued":
                    return ledger.get_experiment(paths, exp)  # cancelled while it waited: the slot goes back
                env = _run_env({**slot.env(), RUN_MARKER: str(run_dir), "AUTOORG_EXP": exp,
                                "AUTOORG_SEED": str(row["seed"]), "AUTOORG_BUDGET": f"{row['budget']:g}"})
                out = run_command(command, cwd=src, env=env, limit_s=row["budget"] + ctx.task.grace,
                                  log_path=run_dir / "log", metrics_path=run_dir / "metrics.jsonl", keep_fds=fds,
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
        if "spawned" in times:  # what the run started outside its process group dies with it too
            kill_run(str(run_dir))
        shutil.rmtree(src, ignore_errors=True)
    verdict, finals, value = judge_outcome(ctx.task, out, row["budget"], row["standard"], row["kind"])
    memory = (finals or {}).get("memory_gb", out.maxrss_gb)
    fields = {"metric": value, "metrics": finals or {}, "wall_s": round(out.wall_s, 3),
              "train_s": (finals or {}).get("train_s"), "memory_gb": memory, "exit_code": out.exit_code,
              "finished": clock.iso_of_epoch(out.times.get("exited")), "pid": None}
    if not ledger.claim_unfinished(paths, exp, verdict, **fields):
        final = ledger.get_experiment(paths, exp)  # cancelled while it ran: that verdict stands
        _write_result_json(ctx, final, times)
        return final
    if row["kind"] == "exp" and verdict == "measured" and on_measured is not None:
        on_measured(ctx, exp)
    ledger.write_results_tsv(paths, ctx.task.metric)
    final = ledger.get_experiment(paths, exp)
    times["recorded"] = time.time()
    _write_result_json(ctx, final, times)
    return final


def _finish_crash(ctx: OrgContext, exp: str, verdict: str, times: dict[str, float]) -> None:
    """Record a run that could not finish (unless the gate cancelled it meanwhile: that verdict stays)."""
    with contextlib.suppress(AutoorgError):
        if ledger.claim_unfinished(ctx.paths, exp, verdict[:500], finished=clock.now_iso(), pid=None):
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
    try:
        old = comms.read_status(ctx.paths, row["agent"])
        comms.report_status(ctx.paths, row["agent"], "running", f"{row['exp']} on {slot.name}")
    except AutoorgError:
        return None
    state = (old or {}).get("state")
    if state in comms.HELD_STATES:  # a person holds it: what it was doing is what to go back to, never the hold
        state = (old or {}).get("reported")
    return state if state and state != "running" else "working"


def _restore_status(ctx: OrgContext, row: dict[str, Any], before: str | None) -> None:
    """Back to the state before the run, unless the agent reported something else meanwhile."""
    if before is None:
        return
    with contextlib.suppress(AutoorgError):
        comms.swap_status(ctx.paths, row["agent"], "running", before, held_too=True)
