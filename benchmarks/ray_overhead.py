"""How long a trivial run takes through the Ray executor beside the local one, on the synthetic task.

Two orgs of the same task (budget 0.2 s: the run itself is ~0.2 s of sleep plus Python's start-up and the
evaluator), one local and one on a local Ray cluster (a head that runs nothing and one worker node, started here).
For each: N runs executed one after another in this process (`experiments.execute`, as `exp run` does; for Ray this
process is already the cluster's driver), then N runs through the detached `autoorg exp worker` a queued run gets
(`exp submit`, the gate), which for Ray pays the worker's own `ray.init`. Each figure: wall seconds from start to the
ledger row landing, median and max.

    .venv/bin/python benchmarks/ray_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from synthetic_org import make_synthetic_org  # the benchmark helper beside this one

from autoorg import executors, experiments
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths


def queue(paths: OrgPaths) -> str:
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    return experiments.queue_run(ctx, kind="baseline", agent="gate", commit=head, head=head, description="bench",
                                 seed=experiments.new_seed(), budget=ctx.task.budget["cpu"], slot_class="cpu")


def in_process(paths: OrgPaths, runs: int) -> list[float]:
    ctx = experiments.load_context(paths)
    launch = executors.executor_for(ctx.spec).launch
    times = []
    for _ in range(runs):
        exp = queue(paths)
        start = time.monotonic()
        row = experiments.execute(ctx, exp, launch=launch)
        times.append(time.monotonic() - start)
        assert row["verdict"] == "ok", row["verdict"]
    return times


def detached(paths: OrgPaths, runs: int) -> list[float]:
    executor = executors.executor_for(experiments.load_context(paths).spec)
    times = []
    for _ in range(runs):
        exp = queue(paths)
        start = time.monotonic()
        executor.spawn_worker(paths, exp)
        while ledger.get_experiment(paths, exp)["verdict"] in ledger.UNFINISHED:
            time.sleep(0.02)
        times.append(time.monotonic() - start)
        assert ledger.get_experiment(paths, exp)["verdict"] == "ok", ledger.get_experiment(paths, exp)["verdict"]
    return times


def line(name: str, times: list[float]) -> str:
    return f"{name:<34} median {statistics.median(times):6.2f} s   max {max(times):6.2f} s   (n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(initialize_head=False)
        cluster.add_node(num_cpus=0, include_dashboard=False, object_store_memory=80 * 2**20)
        cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="autoorg", logging_level=logging.ERROR, log_to_driver=False)
        try:
            for name in ("local", "ray"):
                (Path(tmp) / name).mkdir()
            local, _ = make_synthetic_org(Path(tmp) / "local", "local", ["alice"], budget=0.2, grace=10)
            remote, _ = make_synthetic_org(Path(tmp) / "ray", "ray", ["alice"], budget=0.2, grace=10,
                                           executor={"kind": "ray", "address": cluster.address})
            print(f"a trivial run (synthetic task, budget 0.2 s), {args.runs} runs each, wall time to the ledger row:")
            print(line("local, in process", in_process(local, args.runs)))
            print(line("ray, in process (driver connected)", in_process(remote, args.runs)))
            print(line("local, detached exp worker", detached(local, args.runs)))
            print(line("ray, detached exp worker", detached(remote, args.runs)))
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    main()
