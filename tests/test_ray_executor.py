"""The Ray executor against a real local Ray cluster: a head with nothing to run on and two worker nodes with fake
GPUs (runs use CPU). Experiments and gate runs of the synthetic task land in the ledger from remote workers with
their node; a lost node, a cancel and eight submitters on three GPUs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoorg import executors, experiments, gate
from autoorg.cli.results import render, results
from autoorg.executors.ray import NODE_DIR_ENV
from autoorg.experiments import ledger
from autoorg.experiments.process import run_processes
from autoorg.gate.verify import decide
from autoorg.org import build_org, org_status, plan_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session
from autoorg.testing.experiments import drive_gate, settled
from autoorg.testing.helpers import git, make_repo, retry_until
from tests.exp_support import add_synthetic

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402 - after the guard

# One worker for both Ray modules: the module's cluster is started once, and never beside test_ray_restart's head
pytestmark = pytest.mark.xdist_group("ray")

SMALL = {"object_store_memory": 80 * 2**20}
GPUS = {"big": 2, "small": 1}  # fake GPUs per worker node: 3 in all


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One small cluster for the module. Its processes take the environment they start with, so the node-local
    run folders and the data cache point under the module's temp folder."""
    root = tmp_path_factory.mktemp("ray")
    saved = {k: os.environ.get(k) for k in (NODE_DIR_ENV, "AUTOORG_DATA")}
    os.environ[NODE_DIR_ENV] = str(root / "nodes")
    os.environ["AUTOORG_DATA"] = str(root / "data")
    c, nodes = start_cluster()
    ray.init(address=c.address, namespace="autoorg", logging_level=logging.ERROR, log_to_driver=False)
    c.autoorg_nodes = nodes  # type: ignore[attr-defined]
    c.autoorg_data = root / "data"  # type: ignore[attr-defined]  # the nodes' data cache
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_cluster(tries: int = 3) -> tuple[Any, dict[str, Any]]:
    """Ray gives a node 30 s to register, which a machine at load 30 can miss: start again from scratch."""
    for attempt in range(tries):
        c = Cluster(initialize_head=False)
        try:
            c.add_node(num_cpus=0, num_gpus=0, include_dashboard=False, **SMALL)
            nodes = {name: c.add_node(num_cpus=2, num_gpus=n, **SMALL) for name, n in GPUS.items()}
            c.wait_for_nodes()
            return c, nodes
        except Exception:
            c.shutdown()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def make_org(root: Path, address: str, *, slots: Any = "cpu", budget: float = 0.5, setup: str | None = None,
             hidden: str | None = None) -> OrgPaths:
    """An org of two agents on the synthetic task whose runs execute on the cluster, built headless by build_org
    (its agents and daemon stopped again: the test drives the runner and the gate); `setup`: the task's setup;
    `hidden`: one evaluation-only data file of the task."""
    repo = make_repo(root / "repo")
    add_synthetic(repo, budget=budget, grace=10)
    task = repo / "examples/synthetic/task.yaml"
    if setup:
        task.write_text(task.read_text() + f"setup: {json.dumps(setup)}\n")
    if hidden:
        task.write_text(task.read_text() + f"hidden: [{hidden}]\n")
    if setup or hidden:
        git(repo, "commit", "-qam", "a setup")
    spec = {"tag": "t", "task": "synthetic", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": n, "slots": slots} for n in ("alice", "bob")],
            "processes": {"baseline": {"repeats": 2}, "gate": {"repeats": 2}},
            "executor": {"kind": "ray", "address": address}}
    org_file = root / "t.yaml"
    org_file.write_text(yaml.safe_dump(spec))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    state = build_org(plan)
    open_session(plan.paths, state).stop()
    return plan.paths


def queue_head(paths: OrgPaths, kind: str = "baseline", *, budget: float | None = None, cls: str = "cpu") -> str:
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    return experiments.queue_run(ctx, kind=kind, agent="gate", commit=head, head=head, description=f"{kind} run",
                                 seed=experiments.new_seed(), budget=budget or ctx.task.budget[cls], slot_class=cls)


def row(paths: OrgPaths, exp: str) -> dict[str, Any]:
    return ledger.get_experiment(paths, exp)


def live_nodes() -> dict[str, Any]:
    return {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}


# ---------------------------------------------------------------------------------------------------------------


def test_an_experiment_and_the_gates_runs_land_in_the_ledger_from_ray_workers(cluster: Any, tmp_path: Path) -> None:
    count = tmp_path / "setups"  # the nodes share this machine's disk: one setup for the three runs
    paths = make_org(tmp_path, cluster.address, setup=f"echo ran >> {count}", hidden="t/val.bin")
    (cluster.autoorg_data / "t").mkdir(parents=True, exist_ok=True)
    (cluster.autoorg_data / "t/val.bin").write_text("the validation split")
    ctx = experiments.load_context(paths)
    worktree = ctx.worktree("alice")
    text = (worktree / "examples/synthetic/train.py").read_text()
    (worktree / "examples/synthetic/train.py").write_text(text + "\nimport os as _os\nprint('val bytes read:', len(open("
                                                          "_os.path.join(_os.environ['AUTOORG_DATA'], 't/val.bin'), "
                                                          "'rb').read()), flush=True)\n")
    exp = experiments.queue_experiment(ctx, "alice", "a comment")
    done = gate.run_experiment(ctx, exp)  # what `exp run` does: this process is the run's driver
    workers = {n for n in live_nodes() if live_nodes()[n]["Resources"].get("GPU")}
    assert done["verdict"] in ("pending", "same as head"), done["verdict"]
    assert done["executor"] == "ray" and done["node"] in workers and done["metric"] is not None
    assert done["cpu_s"] is not None and done["sealed"]
    log = (paths.runs / exp / "log").read_text()
    assert "evaluation by the protected evaluator" in log  # streamed back from the worker
    assert "val bytes read: 0" in log  # the node's data cache, its evaluation data hidden from training there too
    assert (paths.runs / exp / "metrics.jsonl").read_text().strip()
    assert not (paths.runs / exp / "src").exists()
    # the gate's baseline runs: detached `exp worker`s, each its run's driver, on the cluster's nodes
    gate.step(paths, log=lambda _line: None)
    baselines = ledger.experiments(paths, kinds=("baseline",))
    assert len(baselines) == 2
    retry_until(lambda: all(row(paths, b["exp"])["verdict"] not in ledger.UNFINISHED for b in baselines),
                timeout=90, message="the baseline runs on the cluster")
    for b in baselines:
        landed = row(paths, b["exp"])
        assert landed["verdict"] == "ok", (landed["verdict"], (paths.runs / b["exp"] / "runner.log").read_text())
        assert landed["executor"] == "ray" and landed["node"] in workers and landed["node_ip"]
        assert (paths.runs / b["exp"] / "heldout.log").is_file()  # the held-out score came back, kept apart
    assert count.read_text() == "ran\n"  # the task's setup, once (per node: keyed by command and protected files)
    # `results` and `status` say where runs ran and where they go
    shown = render(results(paths, include_gate=True), 40)
    for r in ledger.experiments(paths):
        assert r["slot"].startswith(f"cpu@{r['node_ip']}:{r['node'][:6]}") and r["slot"] in shown
    assert results(paths)["experiments"][0]["node"] == done["node"]
    assert org_status(paths)["executor"] == {"kind": "ray", "address": cluster.address, "cpus": 1}


def test_eight_submitters_never_put_two_runs_on_one_gpu(cluster: Any, tmp_path: Path) -> None:
    paths = make_org(tmp_path, cluster.address, slots=[0], budget=0.5)
    exps = [queue_head(paths, cls="gpu") for _ in range(8)]
    ctx = experiments.load_context(paths)
    launch = executors.executor_for(ctx.spec).launch
    errors: list[BaseException] = []

    def submit(exp: str) -> None:
        try:
            experiments.execute(ctx, exp, launch=launch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(e,)) for e in exps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    rows = [row(paths, e) for e in exps]
    # each ran to its end (judged on wall time, a GPU slot's run may be over budget on a machine at load 30)
    assert all(r["verdict"] == "ok" or r["verdict"].startswith("over budget") for r in rows), \
        [r["verdict"] for r in rows]
    nodes = live_nodes()
    spans: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in rows:
        assert r["gpu_ids"] is not None and len(r["gpu_ids"].split(",")) == 1
        assert int(r["gpu_ids"]) < nodes[r["node"]]["Resources"]["GPU"]  # a GPU that node has
        spans.setdefault((r["node"], r["gpu_ids"]), []).append((r["started"], r["finished"]))
    for gpu, held in spans.items():
        held.sort()
        for (_, end), (start, _) in zip(held, held[1:], strict=False):
            assert start >= end, f"two runs at once on {gpu}: {held}"
    assert len(spans) >= 2  # Ray spread them over the GPUs it has


def test_a_cancelled_run_cancels_its_ray_task(cluster: Any, tmp_path: Path) -> None:
    paths = make_org(tmp_path, cluster.address)
    ctx = experiments.load_context(paths)
    executor = executors.executor_for(ctx.spec)
    exp = queue_head(paths, budget=60)
    executor.spawn_worker(paths, exp)
    retry_until(lambda: row(paths, exp)["verdict"] == "running", timeout=60, message="the run to start on Ray")
    folders = Path(os.environ[NODE_DIR_ENV]) / "autoorg-ray" / "t"
    retry_until(lambda: list(folders.glob(f"{exp}-*")), timeout=30, message="the run's folder on the node")
    marker = str(next(folders.glob(f"{exp}-*")))
    retry_until(lambda: run_processes(marker), timeout=30, message="the run's processes on the node")
    assert executor.cancel_runs(paths, [exp], "cancelled: by the test") == [exp]
    retry_until(lambda: not run_processes(marker), timeout=30, message="the Ray task to be cancelled")
    retry_until(lambda: not executor.runner_alive(row(paths, exp)) or row(paths, exp)["pid"] is None, timeout=30)
    assert row(paths, exp)["verdict"] == "cancelled: by the test"


def test_a_lost_node_is_a_crash_and_the_gate_runs_a_lost_verification_again(cluster: Any, tmp_path: Path) -> None:
    paths = make_org(tmp_path, cluster.address)
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    exp = queue_head(paths, budget=60)
    ran: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: ran.append(gate.run_experiment(ctx, exp)))
    runner.start()
    retry_until(lambda: row(paths, exp)["node"], timeout=60, message="the run to start on a node")
    node_id = row(paths, exp)["node"]
    [node] = [n for n in cluster.autoorg_nodes.values() if n.node_id == node_id]
    cluster.remove_node(node)
    runner.join(timeout=60)
    assert ran and ran[0]["verdict"] == executors.NODE_LOST
    assert row(paths, exp)["node"] == node_id
    # a verification whose re-run lost its node: the gate queues the same run (commit, seed, arm) in its place
    cand = queue_head(paths, kind="exp")
    ledger.update_experiment(paths, cand, verdict="verifying")
    lost = row(paths, exp)
    ledger.update_experiment(paths, exp, kind="verify", candidate=cand)
    vid = ledger.add_verification(paths, exp=cand, head=head, commit_sha=head, runs=[exp], status="running")
    assert decide(ctx, ledger.verifications(paths, exp=cand)[0], lambda _line: None)
    [ver] = ledger.verifications(paths, exp=cand)
    assert ver["id"] == vid and ver["status"] == "running" and ver["runs"] != [exp]
    again = row(paths, ver["runs"][0])
    assert (again["commit_sha"], again["seed"], again["kind"]) == (lost["commit_sha"], lost["seed"], "verify")
    executors.executor_for(ctx.spec).cancel_runs(paths, [again["exp"]], "cancelled: test over")


def test_a_verification_arm_whose_node_dies_is_run_again_by_the_gates_own_decision(
        cluster: Any, tmp_path: Path) -> None:
    """Through the real gate: baselines, a screened candidate, its first same-seed pair on Ray; the node running
    the candidate's arm is removed; the gate's own step queues that arm again (commit, seed) and decides."""
    spare = cluster.add_node(num_cpus=2, num_gpus=0, **SMALL)  # an earlier test took a node away
    cluster.wait_for_nodes()
    paths = make_org(tmp_path, cluster.address)
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    drive_gate(paths, lambda: gate.head_stats(ctx, head, "cpu").n >= 2, timeout=120, message="the baselines")
    hold = tmp_path / "hold"  # while it exists the candidate's runs sleep, so its arm is still running on a node
    train = paths.worktree("alice") / "examples/synthetic/train.py"
    # a ~9σ win (LR, warm-up, weight decay at their best): the head's σ has one dof here (2 baselines), and a 6σ win
    # (LR alone) once fell inside the screening band ("no gain") in a clean-clone CI run
    text = (train.read_text().replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 0.006")
            .replace("WARMUP_FRAC = 0.3", "WARMUP_FRAC = 0.05").replace("WEIGHT_DECAY = 0.0", "WEIGHT_DECAY = 0.1"))
    train.write_text(text.replace("args = parser.parse_args()\n", "args = parser.parse_args()\n"
                                  f"while Path({str(hold)!r}).exists():\n    time.sleep(0.1)\n"))
    exp = experiments.queue_experiment(ctx, "alice", "lr 0.006")
    assert gate.run_experiment(ctx, exp)["verdict"] == "candidate"
    hold.touch()
    try:
        drive_gate(paths, lambda: ledger.verifications(paths, exp=exp), timeout=60, message="the verification")
        ver = ledger.verifications(paths, exp=exp)[0]
        arm = next(e for e in ver["runs"] if row(paths, e)["commit_sha"] != head)
        retry_until(lambda: row(paths, arm)["node"], timeout=60, message="the candidate's arm on a node")
        node_id = row(paths, arm)["node"]
        [node] = [n for n in [*cluster.autoorg_nodes.values(), spare] if n.node_id == node_id]
        cluster.remove_node(node)
        retry_until(lambda: row(paths, arm)["verdict"] == executors.NODE_LOST, timeout=60, message="node lost")
    finally:
        hold.unlink()
    drive_gate(paths, lambda: settled(paths, exp), timeout=180, message="the verification to be decided")
    [ver] = ledger.verifications(paths, exp=exp)
    runs = [row(paths, e) for e in ver["runs"]]
    assert arm not in ver["runs"] and all(r["verdict"] == "ok" for r in runs), [r["verdict"] for r in runs]
    lost = row(paths, arm)
    again = [r for r in runs if r["seed"] == lost["seed"] and r["commit_sha"] == lost["commit_sha"]]
    assert len(again) == 1 and again[0]["node"] != node_id
    assert ver["status"] in ("promoted", "rejected")


def test_run_folders_left_on_a_node_are_swept_once_stale_and_dead(tmp_path: Path) -> None:
    from autoorg.executors.ray import STALE_S, sweep_stale
    from autoorg.experiments.process import RUN_MARKER
    old, busy, fresh = (tmp_path / name for name in ("e0001-aaaa", "e0002-bbbb", "e0003-cccc"))
    for folder in (old, busy, fresh):
        folder.mkdir()
    for folder in (old, busy):
        os.utime(folder, (0, time.time() - STALE_S - 60))
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, RUN_MARKER: str(busy)})
    try:
        retry_until(lambda: run_processes(str(busy)), timeout=10, message="the busy run's process")
        sweep_stale(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert not old.exists() and busy.exists() and fresh.exists()
