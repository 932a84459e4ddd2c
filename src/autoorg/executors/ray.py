"""The Ray executor: a run's command executes as a Ray task somewhere on a cluster, everything else stays here.

The org side is the same detached `autoorg exp worker <id>` as locally (found by pid; the run's Ray driver and the
only writer of its ledger row). It exports the exact commit as locally, ships it to the task as a tar of bytes with
the program head's evaluator, and asks Ray for the slot's resources (`num_gpus` = the slot's GPUs, `num_cpus` =
`executor.cpus`): Ray places it, so no GPU is booked twice across the cluster, and no local flock is taken. On the
worker the task (`run_task`, a generator) unpacks the tree into a node-local folder, checks its protected files
against the org's manifest, runs the task's setup once per node (a marker keyed by the setup command and the
manifest), runs the command sealed under its budget and measures it with the evaluator, streaming its log and
`@metric` lines back as it goes; the org side writes them into runs/<id>/log and metrics.jsonl.

Faults: SIGTERM to the worker (down, a futility stop, cancel_runs) cancels the task (`ray.cancel(force=True)`); a
task whose node died after it started is `crash: node lost`; one lost before it started (its node died, the head
restarted) is submitted again while its row is still queued.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoorg.errors import RunnerError
from autoorg.executors.local import LocalExecutor
from autoorg.experiments import ledger
from autoorg.experiments.context import OrgContext
from autoorg.experiments.manifest import Manifest, protected_changes
from autoorg.experiments.measure import Measurement, export_evaluator
from autoorg.experiments.process import (
    Outcome,
    kill_run,
    last_line,
    run_command,
    run_processes,
    signals_interrupt,
)
from autoorg.experiments.run import (
    SETUP_TIMEOUT_S,
    Job,
    SlotRun,
    hidden_data,
    measure_in,
    run_env_for,
    runner_env,
    substitute,
)
from autoorg.experiments.sandbox import Sealing, seal_mode
from autoorg.paths import data_dir
from autoorg.spec import ExecutorSpec, TaskSpec

NAMESPACE = "autoorg"
LOST = "node lost"
STREAM_S = 0.5  # how often a running task sends its new log and @metric lines
CONNECT_S = 120.0  # longest wait for the cluster (a head being restarted) before a run gives up
PROBE_S = 5.0  # how long the head's port may take to answer
SUBMITS = 5  # a run lost before it started is submitted again, at most this many times
NODE_DIR_ENV = "AUTOORG_RAY_DIR"  # the node-local folder for runs and setup markers (default: the temp folder)


class RayExecutor(LocalExecutor):
    """Runs on a Ray cluster: the detached worker of the local executor submits the command as a Ray task."""

    name = "ray"

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec

    def launch(self, ctx: OrgContext, job: Job) -> SlotRun | None:
        return run_on_ray(ctx, job, self.spec)


# ---------------------------------------------------------------------------------------------------------------
# The cluster


def load_ray() -> Any:
    """Ray, imported only where a run or `doctor` needs it: its import takes a second no other command should
    pay. Without the `ray` extra an org that asks for it is told so."""
    try:
        import ray
        import ray.exceptions
        import ray.util
    except ImportError:
        raise RunnerError("executor ray needs Ray on this machine: pip install 'autoorg[ray]'") from None
    return ray


def connect(address: str | None, wait_s: float = CONNECT_S) -> None:
    """Join the cluster as a driver (once per process), retrying while its head is down for up to wait_s."""
    ray = load_ray()
    if ray.is_initialized():
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            _probe(address)  # ray.init waits minutes on a head that is not there
            ray.init(address=address or "auto", namespace=NAMESPACE, logging_level=logging.ERROR, log_to_driver=False,
                     configure_logging=False)
            return
        except (OSError, RuntimeError, ValueError) as exc:
            if time.monotonic() > deadline:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise RunnerError(f"cannot reach the Ray cluster at {address or 'auto'}: {first}") from None
            time.sleep(2.0)


def _probe(address: str | None) -> None:
    """Raise ConnectionError unless HOST:PORT (or ray://HOST:PORT) takes a TCP connection within a few seconds."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=PROBE_S):
        pass


def disconnect() -> None:
    ray = load_ray()
    if ray.is_initialized():
        ray.shutdown()


def cluster_summary(address: str | None) -> dict[str, Any]:
    """What `doctor` says of the cluster: its address, live nodes, GPUs and CPUs, and Ray's version."""
    connect(address, wait_s=0.0)
    ray = load_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return {"address": address or "auto", "nodes": len(nodes), "gpus": int(total.get("GPU", 0)),
            "cpus": int(total.get("CPU", 0)), "version": ray.__version__}


# ---------------------------------------------------------------------------------------------------------------
# What travels to the worker


def pack(folder: Path) -> bytes:
    """A folder as the bytes of a tar (modes and links inside it kept)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if hasattr(tarfile, "tar_filter"):  # 3.11.4+: refuse members that would land outside dest
            tar.extractall(dest, filter="tar")
        else:
            tar.extractall(dest)  # noqa: S202 - our own export: links only inside the tree


@dataclass
class RemoteJob:
    """Everything a Ray task needs to run one experiment on any node (no path of the org's machine in it)."""

    tag: str
    exp: str
    row: dict[str, Any]
    task: TaskSpec
    task_dir: str  # relative to the tree's root
    command: str  # unsubstituted: {python} and {out} are the worker's
    manifest: Manifest
    tree: bytes
    evaluator: bytes | None
    gpus: int
    cpus: int


def node_dir() -> Path:
    return Path(os.environ.get(NODE_DIR_ENV) or tempfile.gettempdir()) / "autoorg-ray"


# ---------------------------------------------------------------------------------------------------------------
# On the worker


def run_task_whole(job: RemoteJob) -> list[dict[str, Any]]:
    """run_task's messages together, when it ends: what a Ray Client driver gets (Ray Client has no streaming
    generators)."""
    return list(run_task(job))


def run_task(job: RemoteJob) -> Iterator[dict[str, Any]]:
    """The Ray task (a generator): {"started": where}, then {"log", "metrics"} chunks, then {"done": result}."""
    ray = load_ray()
    # one folder per execution: a task Ray still runs from an earlier submission (or another org of the same tag)
    # never unpacks its tree over this one's
    base = node_dir() / job.tag / f"{job.exp}-{uuid.uuid4().hex[:12]}"
    sweep_stale(base.parent)
    src, evaluator, out_dir = base / "src", base / "evaluator", base / "out"
    try:
        unpack(job.tree, src)
        out_dir.mkdir(parents=True)
        differ = protected_changes(job.manifest, src)
        if differ:
            yield {"done": {"void": f"void: protected files differ from the org's manifest: {', '.join(differ)}"}}
            return
        failed = setup_on_node(job, src)
        if failed:
            yield {"done": {"crash": failed}}
            return
        if job.evaluator is not None:
            unpack(job.evaluator, evaluator)
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        context = ray.get_runtime_context()
        where = {"executor": "ray", "node": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                 "gpu_ids": ",".join(gpu_ids) or None}
        yield {"started": where, "at": time.time()}
        slot_env = ({"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)} if job.row["slot_class"] == "gpu" else
                    {"CUDA_VISIBLE_DEVICES": "", **{v: str(job.cpus) for v in THREAD_VARS}})
        env = run_env_for(job.exp, job.row, base, out_dir, slot_env)
        cache = data_dir()
        cache.mkdir(parents=True, exist_ok=True)
        sealing = Sealing(seal_mode(), base, read_only=(cache, node_dir() / "setup"),
                          hidden=hidden_data(job.task, cache))
        command = substitute(job.command, budget=job.row["budget"], seed=job.row["seed"], task_dir=job.task_dir,
                             out=str(out_dir))
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                out = run_command(command, cwd=src, env=env, limit_s=job.row["budget"] + job.task.grace,
                                  log_path=base / "log", metrics_path=base / "metrics.jsonl", sealing=sealing)
                measured = (measure_in(job.task, evaluator, job.row, job.task_dir, out, base, env, sealing=sealing)
                            if job.evaluator is not None else None)
                result.update(out=out, measured=measured)
            except Exception as exc:  # noqa: BLE001 - reported to the org as the run's crash
                result["error"] = f"{type(exc).__name__}: {exc}"

        (base / "log").touch()
        (base / "metrics.jsonl").touch()
        logs = _Tail(base / "log"), _Tail(base / "metrics.jsonl")
        worker = threading.Thread(target=work, name=f"run-{job.exp}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(STREAM_S)
            chunk = {"log": logs[0].read(), "metrics": logs[1].read()}
            if chunk["log"] or chunk["metrics"]:
                yield chunk
        yield {"log": logs[0].read(), "metrics": logs[1].read()}
        kept = {name: (base / name).read_bytes() for name in ("evaluation.jsonl", "heldout.log", "heldout.jsonl")
                if (base / name).is_file()}
        yield {"done": {**result, "rewritten": protected_changes(job.manifest, src), "files": kept,
                        "ended": time.time()}}
    finally:
        kill_run(str(base), wait_s=1.0)
        shutil.rmtree(base, ignore_errors=True)


STALE_S = 24 * 3600.0


def sweep_stale(folder: Path) -> None:
    """Remove run folders a task left behind (one force-cancelled, or on a node that was killed): a day old and no
    process of theirs alive."""
    if not folder.is_dir():
        return
    for old in folder.iterdir():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_S and not run_processes(str(old)):
                shutil.rmtree(old, ignore_errors=True)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")


class _Tail:
    """What was appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return b""
        self.offset += len(data)
        return data


def setup_on_node(job: RemoteJob, src: Path) -> str | None:
    """Run the task's setup once per node (a marker keyed by the command and the protected files, under flock);
    returns why it failed, or None."""
    if not job.task.setup:
        return None
    command = substitute(job.task.setup, budget=0, seed=0, task_dir=job.task_dir)
    key = hashlib.sha256(json.dumps([command, job.manifest.files], sort_keys=True).encode()).hexdigest()[:16]
    folder = node_dir() / "setup"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{key}.done"
    if marker.is_file():
        return None
    fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if marker.is_file():
            return None
        log = folder / f"{key}.log"
        out = run_command(command, cwd=src, env=runner_env({}), limit_s=SETUP_TIMEOUT_S, log_path=log,
                          metrics_path=folder / f"{key}.metrics.jsonl")
        if out.killed or out.exit_code != 0:
            why = out.killed or f"exit {out.exit_code}"
            return f"crash: the task's setup failed on {load_ray().util.get_node_ip_address()} ({why}): {last_line(log)}"
        marker.write_text(command)
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# On the org's machine


def run_on_ray(ctx: OrgContext, job: Job, spec: ExecutorSpec) -> SlotRun | None:
    """Submit a job as a Ray task, write what it streams into runs/<id>/, and return what it gave."""
    connect(spec.address, wait_s=min(job.wait_s, CONNECT_S))
    ray = load_ray()
    run_dir = ctx.paths.runs / job.exp
    evaluator = None
    if ctx.task.evaluate is not None:
        folder = run_dir / "evaluator"
        try:
            export_evaluator(ctx.repo, ctx.program_head(), ctx.task, folder)
            evaluator = pack(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    cls = job.row["slot_class"]
    gpus = len(job.slots[0].gpus) if cls == "gpu" else 0
    remote = RemoteJob(tag=ctx.paths.tag, exp=job.exp, row=job.row, task=ctx.task, task_dir=ctx.task_dir,
                       command=job.command, manifest=job.manifest, tree=pack(job.src), evaluator=evaluator,
                       gpus=gpus, cpus=spec.cpus)
    payload = ray.put(remote)
    cores = spec.cpus
    client = (spec.address or "").startswith("ray://")
    for _attempt in range(SUBMITS):
        if ledger.get_experiment(ctx.paths, job.exp)["verdict"] != "queued":
            return None  # cancelled while it waited
        job.times["lease_wait"] = time.time()
        task = ray.remote(run_task_whole if client else run_task).options(
            num_cpus=spec.cpus, num_gpus=gpus, max_retries=0, name=f"autoorg-{ctx.paths.tag}-{job.exp}")
        ref = task.remote(payload)
        state: dict[str, Any] = {"at": time.time()}
        try:
            with signals_interrupt():
                # Ray Client has no streaming generators: there, the log and @metric lines come when the run ends
                messages = iter(ray.get(ref)) if client else (ray.get(r) for r in ref)
                done = _follow(messages, run_dir, job, state)
        except KeyboardInterrupt:
            ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayTaskError as exc:
            raise RunnerError(f"the Ray task failed: {str(exc).strip().splitlines()[-1]}") from None
        except ray.exceptions.RayError as exc:
            if "where" in state or client:  # it ran (through Ray Client: it may have): lost under it, not again
                lost = Outcome(exit_code=None, killed=LOST, wall_s=time.time() - state["at"], maxrss_gb=None,
                               times={"spawned": state["at"], "exited": time.time()})
                if job.say:
                    job.say(f"{job.exp}: {LOST} ({type(exc).__name__})")
                return SlotRun(lost, None, [], cores, state.get("where") or {"executor": "ray"})
            if job.say:
                job.say(f"{job.exp}: lost before it started ({type(exc).__name__}); submitting it again")
            _reconnect(spec)
            continue
        return _slot_run(done, run_dir, state, cores, gpus)
    raise RunnerError(f"the Ray task of {job.exp} was lost {SUBMITS} times before it started")


def _follow(messages: Iterator[dict[str, Any]], run_dir: Path, job: Job, state: dict[str, Any]) -> dict[str, Any]:
    """Write what the task sends into runs/<id>/ until it is done; returns its final message."""
    with open(run_dir / "log", "ab") as log, open(run_dir / "metrics.jsonl", "ab") as metrics:
        for item in messages:
            if "started" in item:
                state["where"], state["at"] = item["started"], item["at"]
                job.times["leased"] = item["at"]
                where = item["started"]
                gpus = (where["gpu_ids"] or "").replace(",", "+")
                slot = f"{job.row['slot_class']}{gpus}@{where['node_ip']}:{where['node'][:6]}"
                job.on_started(slot, where)
                if job.say:
                    job.say(f"{job.exp} on Ray node {where['node_ip']} ({where['node'][:8]}), "
                            f"log {run_dir / 'log'}")
            if item.get("log"):
                log.write(item["log"])
                log.flush()
            if item.get("metrics"):
                metrics.write(item["metrics"])
                metrics.flush()
            if "done" in item:
                return dict(item["done"])
    raise RunnerError(f"the Ray task of {job.exp} ended without a result")


def _slot_run(done: dict[str, Any], run_dir: Path, state: dict[str, Any], cores: int, gpus: int) -> SlotRun:
    """The SlotRun of a task's final message (a void or a failed setup is a crashed outcome)."""
    for name, data in done.get("files", {}).items():
        (run_dir / name).write_bytes(data)
    where = dict(state.get("where") or {"executor": "ray"})
    if "error" in done:
        raise RunnerError(f"on Ray node {where.get('node_ip', '?')}: {done['error']}")
    if "void" in done or "crash" in done:
        nothing = Outcome(exit_code=None, killed=None, wall_s=0.0, maxrss_gb=None)
        return SlotRun(nothing, None, [], cores, where, verdict=done.get("void") or done["crash"])
    out: Outcome = done["out"]
    measured: Measurement | None = done["measured"]
    if gpus:
        where["gpu_s"] = round(out.wall_s * gpus, 3)
    return SlotRun(out, measured, list(done["rewritten"]), cores, where)


def _reconnect(spec: ExecutorSpec) -> None:
    """After a lost task: drop this driver's connection (its head may have restarted) and join again."""
    with contextlib.suppress(Exception):
        load_ray().shutdown()
    connect(spec.address)
