"""Experiment execution: the task's setup once per org, a slot, the command under its budget, the ledger row.

  execute  export the exact commit to runs/<id>/src (raw blobs), check its protected files against the org's
           manifest, hand it as a Job to a launcher, judge the compute the harness measured, record result.json
           and the ledger row (this process is its only writer), then hand the row to `on_measured` (the gate
           screens it)
  run_here the local launcher: run the task's setup once per org, lease a slot (compute/slots.py), run the
           command sealed (sandbox.py) in its own process group killed at budget + grace (process.py), stream
           runs/<id>/log and metrics.jsonl, measure its output folder runs/<id>/out with the protected evaluator
           on the same slot (measure.py), re-check the protected files (a rewritten one voids the run). The Ray
           launcher (executors/ray.py) does the same on a cluster node.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoorg import clock, comms, workspace
from autoorg.compute.slots import (
    DEFAULT_WAIT_S,
    GateHold,
    Slot,
    Withdrawn,
    agent_slots,
    class_slots,
    lease_slot,
    lock_file,
    try_lock,
)
from autoorg.environment import without_secrets
from autoorg.errors import AutoorgError, RunnerError, Say, TaskError
from autoorg.experiments import leaks, ledger
from autoorg.experiments.context import OrgContext
from autoorg.experiments.manifest import Manifest, org_manifest, protected_changes
from autoorg.experiments.measure import Measurement, evaluate, export_evaluator, metric_value, written_value
from autoorg.experiments.process import RUN_MARKER, Outcome, kill_run, last_line, process_start, run_command
from autoorg.experiments.sandbox import Sealing, run_env, seal_mode
from autoorg.paths import OrgPaths, atomic_write_text, data_dir
from autoorg.spec import HELDOUT_OUT, TaskSpec
from autoorg.state import org_status_word

# ---------------------------------------------------------------------------------------------------------------
# Setup, once per org


def substitute(command: str, *, budget: float, seed: int, task_dir: str, out: str = "", heldout_out: str = "") -> str:
    """Fill {python} {budget} {seed} {task_dir} {out} {heldout_out} (and nothing else: other braces stay as
    written)."""
    values = {"{python}": shlex.quote(sys.executable), "{budget}": f"{budget:g}", "{seed}": str(seed),
              "{task_dir}": shlex.quote(task_dir), "{out}": shlex.quote(out), HELDOUT_OUT: shlex.quote(heldout_out)}
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
        out = run_command(command, cwd=cwd, env=runner_env({}), limit_s=SETUP_TIMEOUT_S, log_path=log,
                          metrics_path=ctx.paths.logs / "setup.metrics.jsonl")
        if out.killed or out.exit_code != 0:
            why = out.killed or f"exit {out.exit_code}"
            raise TaskError(f"the task's setup failed ({why}); see {log}: {last_line(log)}")
        atomic_write_text(marker, command)
    finally:
        os.close(fd)


def runner_env(extra: dict[str, str]) -> dict[str, str]:
    """The runner's environment less its secrets (an agent's key never reaches training code) and less another
    run's marker."""
    env = without_secrets(os.environ)
    env.pop(RUN_MARKER, None)
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}

OVER_BUDGET_TOLERANCE = 0.02  # a run may report train_s up to 2% over its budget (timer granularity, startup)
SETUP_TIMEOUT_S = 3 * 3600.0


# ---------------------------------------------------------------------------------------------------------------
# Executing a queued experiment


def compute_used(out: Outcome, slot_class: str, cores: int) -> tuple[float, str]:
    """The compute a run used as the harness measured it, in seconds, and its unit: on a CPU slot the CPU time of
    its whole process tree per allotted core (a run slowed by other load uses less CPU per wall second, so a busy
    machine cannot void an honest run); on a GPU slot the wall time of the tree."""
    if slot_class == "cpu" and out.cpu_s is not None:
        return out.cpu_s / max(cores, 1), "CPU-s" if cores <= 1 else "CPU-s per core"
    return out.wall_s, "s"


def judge_outcome(task: TaskSpec, out: Outcome, budget: float, standard: bool, kind: str, slot_class: str = "cpu",
                  cores: int = 1, measured: Measurement | None = None) -> tuple[str, dict[str, Any] | None, float | None]:
    """(verdict, final metrics, metric value) of a finished training command and its measurement by the protected
    evaluator (None: the task has none, so training's own final line is the result). Crashes say why; a run whose
    measured compute exceeds budget + the task's start-up allowance is void ("over budget: ...")."""
    if measured is None:
        finals, value, why = metric_value(task, out)
    else:
        finals, value, why = measured.finals, measured.value, measured.crash
    if out.killed == "over budget":
        return f"crash: over budget (killed at {budget + task.grace:g}s = budget + grace)", finals, None
    if out.strayed:  # checked first: it was killed for it
        return f"void: {out.strayed}"[:500], finals, None
    if out.killed:
        return f"crash: {out.killed}", finals, None
    if out.exit_code != 0:
        why = f"exit {out.exit_code}"
        if out.exit_code == 127:
            why += " (command not found)"
        elif out.exit_code is not None and out.exit_code < 0:
            why = f"killed by {signal.Signals(-out.exit_code).name}"
        return f"crash: {why}", finals, None
    if why is not None or value is None:
        return f"crash: {why}", finals, None
    used, unit = compute_used(out, slot_class, cores)
    startup = task.startup.get(slot_class, 0.0)
    if used > budget + startup:
        return f"over budget: {used:.3g} {unit} > {budget:g} + {startup:g}", finals, value
    # a run's own report can only void it (it never makes a run valid): train_s is information otherwise
    train_s = _reported_train_s(finals, out, measured)
    if isinstance(train_s, int | float) and train_s > budget * (1 + OVER_BUDGET_TOLERANCE):
        return f"over budget (train_s {train_s:.1f} > budget {budget:g})", finals, value
    if kind != "exp":
        return "ok", finals, value
    return ("measured" if standard else "off-budget"), finals, value


def _training_report(out: Outcome) -> dict[str, Any]:
    """Training's last final @metric line: progress, never the result."""
    finals = [m for m in out.metric_lines if m.get("final")]
    return dict(finals[-1]) if finals else {}


def _reported_train_s(finals: dict[str, Any] | None, out: Outcome, measured: Measurement | None) -> Any:
    """The training time a run reports (its own claim, held to the budget), else the evaluator's."""
    if measured is None:
        return (finals or {}).get("train_s")
    return _training_report(out).get("train_s", (finals or {}).get("train_s"))


def measure_run(ctx: OrgContext, row: dict[str, Any], out: Outcome, run_dir: Path, env: dict[str, str],
                fds: tuple[int, ...], cores: tuple[int, ...], sealing: Sealing) -> Measurement | None:
    """Measure a finished training run with the protected evaluator (and score a gate run on the held-out split),
    sealed as training was and unable to change its own files; None when the task has no evaluator."""
    if ctx.task.evaluate is None:
        return None
    if out.killed or out.exit_code != 0:
        return Measurement(None, None, None)  # training failed: judge_outcome says how
    folder = run_dir / "evaluator"
    try:
        export_evaluator(ctx.repo, ctx.program_head(), ctx.task, folder)
        return measure_in(ctx.task, folder, row, ctx.task_dir, out, run_dir, env, fds, cores, sealing)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_in(task: TaskSpec, folder: Path, row: dict[str, Any], task_dir: str, out: Outcome, run_dir: Path,
               env: dict[str, str], fds: tuple[int, ...] = (), cores: tuple[int, ...] = (),
               sealing: Sealing | None = None) -> Measurement | None:
    """Measure a finished training run with the evaluator exported into folder (where it runs: this machine or a
    Ray worker), under training's `sealing` with the evaluator's folder read-only too (the evaluator reads what
    training wrote: a crafted checkpoint that takes it over can still write nothing but the run folder)."""
    if task.evaluate is None:
        return None
    if out.killed or out.exit_code != 0:
        return Measurement(None, None, None)
    if sealing is not None:  # the evaluator reads the evaluation data training could not
        sealing = Sealing(sealing.seal, sealing.writable, read_only=(*sealing.read_only, folder), hidden=())
    values = {"budget": row["budget"], "seed": row["seed"], "task_dir": task_dir, "out": env["AUTOORG_OUT"]}
    scored = bool(task.heldout) and row["kind"] != "exp"  # only the gate's runs; logged apart from the run's log
    heldout_log = run_dir / "heldout.log"
    together = scored and HELDOUT_OUT in task.evaluate
    if together:  # the evaluator writes it: nothing training left there counts (a file, a link, a folder)
        if heldout_log.is_dir() and not heldout_log.is_symlink():
            shutil.rmtree(heldout_log)
        heldout_log.unlink(missing_ok=True)
    measured = evaluate(task, substitute(task.evaluate, **values, heldout_out=str(heldout_log) if together else ""),
                        cwd=folder, env=env, log_path=run_dir / "log", metrics_path=run_dir / "evaluation.jsonl",
                        keep_fds=fds, cores=cores, sealing=sealing)
    if together and measured.crash is None:
        measured.heldout = written_value(task, heldout_log)
    elif scored and task.heldout and measured.crash is None:
        heldout = evaluate(task, substitute(task.heldout, **values), cwd=folder, env=env, log_path=heldout_log,
                           metrics_path=run_dir / "heldout.jsonl", keep_fds=fds, cores=cores, sealing=sealing)
        measured.heldout = heldout.value
    return measured


def run_env_for(exp: str, row: dict[str, Any], run_dir: Path, out_dir: Path, slot_env: dict[str, str]) -> dict[str, str]:
    """A sealed run's environment: the slot's variables, its marker, AUTOORG_EXP/SEED/BUDGET/OUT and the data
    cache (AUTOORG_DATA, named even when it is the default under ~: the run's HOME is its own)."""
    temp, home = run_dir / "tmp", run_dir / "home"
    temp.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    return run_env({**slot_env, RUN_MARKER: str(run_dir), "AUTOORG_EXP": exp, "AUTOORG_SEED": str(row["seed"]),
                    "AUTOORG_BUDGET": f"{row['budget']:g}", "AUTOORG_OUT": str(out_dir),
                    "AUTOORG_DATA": str(data_dir())}, temp, home)


# ---------------------------------------------------------------------------------------------------------------
# Where a run executes: the launcher (executors/ has one per executor)


PAIR_WAIT_S = 900.0  # longest one arm of a same-seed pair keeps its slot waiting for the other arm's
GIVE_WAY_S = 0.5  # an arm that gave its slot to an older pair lines up again this much later


@dataclass
class Job:
    """A queued run, exported and checked, ready for a slot: what a launcher needs to run it anywhere."""

    exp: str
    row: dict[str, Any]
    src: Path  # the exported commit
    command: str  # the run command, unsubstituted ({out} is where it runs)
    slots: list[Slot]  # the slots it may use (a Ray launcher asks for the first one's resources)
    manifest: Manifest
    times: dict[str, float]
    on_started: Callable[[str, dict[str, Any]], None]  # (slot name, where it runs: ledger columns)
    say: Say | None
    wait_s: float


@dataclass
class SlotRun:
    """What running a job on a slot gave: the command's outcome, its measurement, the protected files it changed,
    the cores it had and where it ran (ledger columns: executor, node, node_ip, gpu_ids)."""

    out: Outcome
    measured: Measurement | None
    rewritten: list[str]
    cores: int
    where: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None  # decided where it ran, before its command (a void tree, a failed setup)
    hold: GateHold | None = None  # the slot kept for the gate until the run is recorded (this machine's slots)


Launcher = Callable[[OrgContext, Job], "SlotRun | None"]  # None: cancelled before it started


def has_slot(paths: OrgPaths, exp: str) -> bool:
    """Has this run leased its slot (`runs/<id>/leased`, written by the launcher on this machine)? A queued pair's
    arm that has one is waiting at the pair's start, not in line."""
    return (paths.runs / exp / "leased").exists()


def _wait_for_other_arm(paths: OrgPaths, row: dict[str, Any], say: Say | None) -> bool:
    """A same-seed pair's arms start together (what loads the machine then moves both alike and cancels in their
    difference; and the pair lands as one, so the gate's next look takes both slots at once): an arm that has its
    slot waits, keeping it, until the other arm has one too (its `leased` mark), has ended, or PAIR_WAIT_S passed.
    The gate's runs come first, so the other arm has the next slot that frees.

    When a look queues more pairs than there are free slots, arms of different pairs can hold the slots each
    other's partners need. Then the younger pair gives way: True means this arm must hand its slot back and line up
    again, because an arm of an older pair holds a slot and waits for its partner. An older pair's arm never gives
    way, so the pairs start one after the other, each whole."""
    arms = _pair_arms(_verify_rows(paths), row)
    if arms is None:
        return False
    other = next(e for e in arms if e != row["exp"])
    deadline = time.monotonic() + PAIR_WAIT_S
    told = False
    while time.monotonic() < deadline and not has_slot(paths, other) \
            and ledger.get_experiment(paths, other)["verdict"] == "queued":
        if _older_pair_waiting(paths, arms):
            return True
        if not told and say is not None:
            say(f"{row['exp']} waits for its pair's other arm ({other}) to have a slot")
            told = True
        time.sleep(0.1)
    return False


def _verify_rows(paths: OrgPaths) -> dict[str, dict[str, Any]]:
    return {r["exp"]: r for r in ledger.experiments(paths, kinds=("verify",))}


def _pair_arms(rows: dict[str, dict[str, Any]], row: dict[str, Any]) -> tuple[str, str] | None:
    """The two arms of the pair a verify run belongs to, in the order they were queued (None: it has no partner)."""
    mine = sorted((r for r in rows.values() if r["candidate"] == row["candidate"] and r["seed"] == row["seed"]),
                  key=lambda r: r["id"])
    return (mine[0]["exp"], mine[1]["exp"]) if len(mine) == 2 else None


def _older_pair_waiting(paths: OrgPaths, arms: tuple[str, str]) -> bool:
    """Does an arm of a pair queued before this one hold a slot while its partner has none?"""
    rows = _verify_rows(paths)
    for r in rows.values():
        if r["verdict"] != "queued" or r["exp"] in arms or not has_slot(paths, r["exp"]):
            continue
        theirs = _pair_arms(rows, r)
        if theirs is not None and rows[theirs[0]]["id"] < rows[arms[0]]["id"] \
                and not has_slot(paths, theirs[1] if theirs[0] == r["exp"] else theirs[0]):
            return True
    return False


@contextlib.contextmanager
def _lease_run_slot(paths: OrgPaths, job: Job, holder: dict[str, Any]) \
        -> Iterator[tuple[Slot, tuple[int, ...]] | None]:
    """A slot for the run (`lease_slot`), and for a pair's arm the pair's start (`_wait_for_other_arm`): yields None
    when the run was cancelled while it waited. An arm that gives way to an older pair hands its slot back and
    lines up again, GIVE_WAY_S later, behind the older pair's waiting arm."""
    row, marker = job.row, paths.runs / job.exp / "leased"

    def still_queued() -> bool:
        return bool(ledger.get_experiment(paths, job.exp)["verdict"] == "queued")

    while True:
        try:
            with lease_slot(paths, job.slots, holder=holder, wait_s=job.wait_s, say=job.say,
                            gate=row["kind"] != "exp", wanted=still_queued) as (slot, fds):
                if not still_queued():
                    yield None
                    return
                marker.touch()
                gave_way = (row["kind"] == "verify" and len(job.slots) >= 2
                            and _wait_for_other_arm(paths, row, job.say))
                if gave_way:
                    marker.unlink(missing_ok=True)
                elif not still_queued():
                    yield None
                    return
                else:
                    yield slot, fds
                    return
        except Withdrawn:  # raised only while it waits, before anything is yielded
            yield None
            return
        time.sleep(GIVE_WAY_S)


def run_here(ctx: OrgContext, job: Job) -> SlotRun | None:
    """The local launcher: lease a slot on this machine (flock per device), run the command sealed, measure."""
    paths, exp, row, times = ctx.paths, job.exp, job.row, job.times
    run_dir = paths.runs / exp
    out_dir = run_dir / "out"
    ensure_setup(ctx, job.src, job.say)
    command = substitute(job.command, budget=row["budget"], seed=row["seed"], task_dir=ctx.task_dir,
                         out=str(out_dir))
    holder = {"exp": exp, "agent": row["agent"], "kind": row["kind"]}
    times["lease_wait"] = time.time()
    with _lease_run_slot(paths, job, holder) as leased:
        if leased is None:
            return None  # cancelled while it waited: the slot goes back
        slot, fds = leased
        times["leased"] = time.time()
        env = run_env_for(exp, row, run_dir, out_dir, slot.env())
        sealing = Sealing(seal_mode(), run_dir, read_only=_read_only(ctx), hidden=hidden_data(ctx.task, data_dir()))
        if job.say:
            job.say(f"{exp} on {slot.name}: {command}  (budget {row['budget']:g}s, log {run_dir / 'log'})")
        out = run_command(command, cwd=job.src, env=env, limit_s=row["budget"] + ctx.task.grace,
                          log_path=run_dir / "log", metrics_path=run_dir / "metrics.jsonl", keep_fds=fds,
                          cores=slot.cores, sealing=sealing, times=times,
                          on_started=lambda: job.on_started(slot.name, {"executor": "local"}))
        measured = measure_run(ctx, row, out, run_dir, env, fds, slot.cores, sealing)
        times["measured"] = time.time()  # the slot's work for this run ends here
        # taken before the lease ends: no waiting agent's run slips in between (nor, for an agent's run the gate
        # has yet to screen, a waiting gate run)
        hold = GateHold(paths, slot, first=row["kind"] == "exp")
    return SlotRun(out, measured, protected_changes(job.manifest, job.src), len(slot.cores), {"executor": "local"},
                   hold=hold)


def execute(ctx: OrgContext, exp: str, *, say: Say | None = None, wait_s: float = DEFAULT_WAIT_S,
            on_measured: Callable[[OrgContext, str], object] | None = None,
            on_recorded: Callable[[OrgContext, dict[str, Any], GateHold], object] | None = None,
            launch: Launcher = run_here) -> dict[str, Any]:
    """Run a queued experiment to its end and record it; returns its ledger row. `on_measured` sees an agent's
    measured experiment before results.tsv and result.json are written (the gate screens it there);
    `on_recorded` sees the recorded row while the slot it ran on is still kept for the gate (a GateHold: local
    slots only), which it gives up when that returns. `launch` runs it on a slot (executors/: this machine, or a
    Ray cluster); the ledger is written here, by this process."""
    paths = ctx.paths
    row = ledger.get_experiment(paths, exp)
    if row["verdict"] != "queued":
        raise RunnerError(f"experiment {exp} is not queued (verdict: {row['verdict']})")
    ledger.update_experiment(paths, exp, pid=os.getpid(), pid_start=process_start(os.getpid()))
    times = {"invoked": time.time()}
    run_dir = paths.runs / exp
    src = run_dir / "src"
    out_dir = run_dir / "out"
    protected = org_manifest(paths, ctx.repo, ctx.state.base, ctx.task)
    before: list[str | None] = [None]

    def on_started(slot: str, where: dict[str, Any]) -> None:
        # after the spawn, not before: a freed slot goes straight back to work
        started = clock.iso_of_epoch(times.get("leased", time.time()))
        ledger.claim_unfinished(paths, exp, "running", slot=slot, started=started, **where)
        before[0] = _set_running(ctx, row, slot)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        workspace.export_tree(ctx.repo, row["commit_sha"], src)
        differ = protected_changes(protected, src)
        if differ:
            _finish_crash(ctx, exp, f"void: protected files differ from the org's manifest: {', '.join(differ)}",
                          times)
            return ledger.get_experiment(paths, exp)
        leaked = leaks.carried(ctx.repo, ctx.state.base, row["commit_sha"], src, hidden_data(ctx.task, data_dir()))
        if leaked:
            _finish_crash(ctx, exp, f"void: carries evaluation-only data: {', '.join(leaked)}", times)
            return ledger.get_experiment(paths, exp)
        if row["kind"] == "exp":
            slots = agent_slots(ctx.spec, row["agent"])
        else:
            avoid = ledger.get_experiment(paths, row["candidate"])["slot"] if row["candidate"] else None
            slots = class_slots(ctx.spec, row["slot_class"], avoid)
        command = ctx.task.run.get(row["slot_class"])
        if not command:
            raise TaskError(f"task '{ctx.task.name}' has no run command for {row['slot_class']} slots")
        job = Job(exp=exp, row=row, src=src, command=command, slots=slots, manifest=protected, times=times,
                  on_started=on_started, say=say, wait_s=wait_s)
        try:
            ran = launch(ctx, job)
        finally:
            _restore_status(ctx, row, before[0])
        if ran is None:
            return ledger.get_experiment(paths, exp)
    except KeyboardInterrupt:
        # `down` marks the org stopping before it stops the agents: their runs in flight were stopped, not crashed
        stopped = org_status_word(paths) in ("stopping", "stopped")
        _finish_crash(ctx, exp, ledger.ORG_STOPPED if stopped else "crash: interrupted", times)
        raise
    except AutoorgError as exc:
        _finish_crash(ctx, exp, f"crash: {exc}", times)
        raise
    finally:
        if "spawned" in times:  # what the run started outside its process group dies with it too
            kill_run(str(run_dir))
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(run_dir / "tmp", ignore_errors=True)
        shutil.rmtree(run_dir / "home", ignore_errors=True)
    try:
        final = _record(ctx, exp, row, ran, times, on_measured)
        if ran.hold is not None and on_recorded is not None:
            on_recorded(ctx, final, ran.hold)
    finally:
        if ran.hold is not None:
            ran.hold.release()
    return final


def _record(ctx: OrgContext, exp: str, row: dict[str, Any], ran: SlotRun, times: dict[str, float],
            on_measured: Callable[[OrgContext, str], object] | None) -> dict[str, Any]:
    """Judge a run that ran and write its ledger row, results.tsv and result.json; returns the row."""
    paths = ctx.paths
    out, measured, rewritten = ran.out, ran.measured, ran.rewritten
    verdict, finals, value = judge_outcome(ctx.task, out, row["budget"], row["standard"], row["kind"],
                                           row["slot_class"], ran.cores, measured)
    if rewritten:  # its number came from code other than the protected files it was given
        verdict, value = f"void: rewrote protected file {', '.join(rewritten)}"[:500], None
    if ran.verdict:
        verdict, value = ran.verdict[:500], None
    memory = (finals or {}).get("memory_gb", _training_report(out).get("memory_gb", out.maxrss_gb))
    fields = {"metric": value, "metrics": finals or {}, "wall_s": round(out.wall_s, 3),
              "cpu_s": None if out.cpu_s is None else round(out.cpu_s, 3), "gpu_s": None, "sealed": out.sealed,
              "train_s": _reported_train_s(finals, out, measured), "memory_gb": memory, "exit_code": out.exit_code,
              "finished": clock.iso_of_epoch(out.times.get("exited")), "pid": None,
              "heldout": measured.heldout if measured is not None and value is not None else None,
              **ran.where}
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


def _read_only(ctx: OrgContext) -> tuple[Path, ...]:
    """What a sealed run sees but cannot write: the repository (its .git and every org's state under it), this
    org's home wherever it lives, the task's data cache (created first, so a run cannot plant it)."""
    cache = data_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return ctx.repo, ctx.paths.home, cache


def hidden_data(task: TaskSpec, cache: Path) -> tuple[Path, ...]:
    """The task's evaluation-only data files in the data cache (its `hidden` globs): training sees them empty."""
    return tuple(sorted({path for pattern in task.hidden for path in cache.glob(pattern)}))


def _finish_crash(ctx: OrgContext, exp: str, verdict: str, times: dict[str, float]) -> None:
    """Record a run that could not finish (unless the gate cancelled it meanwhile: that verdict stays)."""
    with contextlib.suppress(AutoorgError):
        if ledger.claim_unfinished(ctx.paths, exp, verdict[:500], finished=clock.now_iso(), pid=None):
            ledger.write_results_tsv(ctx.paths, ctx.task.metric)
        _write_result_json(ctx, ledger.get_experiment(ctx.paths, exp), times)


def _write_result_json(ctx: OrgContext, row: dict[str, Any], times: dict[str, float]) -> None:
    result = {k: row[k] for k in ("exp", "kind", "agent", "task", "commit_sha", "parent", "head", "tree", "seed",
                                  "budget", "slot_class", "slot", "verdict", "metric", "metrics", "wall_s",
                                  "train_s", "cpu_s", "gpu_s", "sealed", "memory_gb", "exit_code", "description", "diff_stat", "org_code",
                                  "candidate", "queued", "started", "finished")}
    result["metric_name"] = ctx.task.metric
    result["log"] = str(ctx.paths.runs / row["exp"] / "log")
    result["times"] = {k: round(v, 4) for k, v in times.items()}
    atomic_write_text(ctx.paths.runs / row["exp"] / "result.json", json.dumps(result, indent=2) + "\n")


def _set_running(ctx: OrgContext, row: dict[str, Any], slot: str) -> str | None:
    """Mark the agent `running` while its experiment is on a slot; returns the state to go back to."""
    if row["kind"] != "exp":
        return None
    try:
        old = comms.read_status(ctx.paths, row["agent"])
        comms.report_status(ctx.paths, row["agent"], "running", f"{row['exp']} on {slot}")
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
