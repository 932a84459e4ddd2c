"""The org survives a Ray head restart: a real head started with `ray start --head` (its own session), killed with
everything it started, and started again on the same port. The run that was running is a crash (it has no result,
and is never measured twice); the run that was waiting for the cluster's only CPU is submitted again and measured
on the new head; nothing stays unfinished."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoorg import executors, experiments, gate
from autoorg.executors.ray import NODE_DIR_ENV
from autoorg.experiments import ledger
from autoorg.testing.helpers import retry_until
from tests.test_ray_executor import make_org, queue_head, row

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # beside test_ray_executor's cluster never, on one worker
RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")  # the venv's own CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Head:
    """A Ray head of one CPU in its own session, so that it and everything it starts can be killed together."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.client_port = root, free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, NODE_DIR_ENV: str(root / "nodes"), "AUTOORG_DATA": str(root / "data"),
                    "RAY_USAGE_STATS_ENABLED": "0"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "head.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [str(RAY), "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                 f"--ray-client-server-port={self.client_port}", "--num-cpus=1", "--num-gpus=0",
                 "--include-dashboard=false", f"--object-store-memory={80 * 2**20}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        finally:
            log.close()
        retry_until(self.listening, timeout=120, interval=0.5, message="the Ray head to listen")

    def listening(self, port: int | None = None) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("ray start exited: " + (self.root / "head.log").read_text()[-1500:])
        try:
            with socket.create_connection(("127.0.0.1", port or self.port), timeout=1):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL to the head's session: the GCS, the raylet, its workers and the running task."""
        assert self.proc is not None
        sid = os.getsid(self.proc.pid)
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            try:
                if os.getsid(pid) == sid:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        self.proc.wait(timeout=30)
        self.proc = None
        retry_until(lambda: not self.listening(), timeout=30, message="the head's port to close")


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """One head for the module (starting one takes ~15 s): the restart test leaves it restarted, on the same ports."""
    h = Head(tmp_path_factory.mktemp("ray-head"))
    h.start()
    try:
        yield h
    finally:
        if h.proc is not None and h.proc.poll() is None:
            h.kill()


def test_a_head_restart_resubmits_what_waited_and_counts_nothing_twice(head: Head, tmp_path: Path) -> None:
    paths = make_org(tmp_path / "org", head.address, budget=30)
    ctx = experiments.load_context(paths)
    executor = executors.executor_for(ctx.spec)
    running, waiting = queue_head(paths), queue_head(paths)
    executor.spawn_worker(paths, running)
    retry_until(lambda: row(paths, running)["node"], timeout=120, message="the first run on the head's CPU")
    executor.spawn_worker(paths, waiting)  # the cluster's one CPU is taken: Ray holds it back
    retry_until(lambda: (paths.runs / waiting / "runner.log").exists(), timeout=30)
    old_node = row(paths, running)["node"]

    head.kill()
    head.start()

    def settled() -> bool:
        gate.step(paths, log=lambda _line: None)  # what the daemon does: dead runners swept, queued ones resubmitted
        return all(row(paths, e)["verdict"] not in ledger.UNFINISHED for e in (running, waiting))

    retry_until(settled, timeout=240, interval=1, message="both runs decided after the restart")
    first, second = row(paths, running), row(paths, waiting)
    assert first["verdict"].startswith("crash") and first["metric"] is None, first["verdict"]
    assert second["verdict"] == "ok" and second["metric"] is not None, (
        second["verdict"], (paths.runs / waiting / "runner.log").read_text()[-2000:])
    assert second["node"] != old_node  # the new head's node
    others = [r for r in ledger.experiments(paths) if r["exp"] not in (running, waiting)]
    baselines: list[dict[str, Any]] = [r for r in others if r["kind"] == "baseline"]
    assert len(others) == len(baselines)  # only the gate's own baselines besides the two: nothing run twice
    log = (paths.runs / waiting / "log").read_text()
    assert log.count("evaluation by the protected evaluator") == 1


def test_an_org_runs_through_a_ray_client_address(head: Head, tmp_path: Path) -> None:
    """`executor: {address: ray://HOST:PORT}` (Ray Client, what a cluster behind a gateway offers): the run is
    submitted, streamed back and measured through it."""
    address = f"ray://127.0.0.1:{head.client_port}"
    retry_until(lambda: head.listening(head.client_port), timeout=60, message="the Ray Client server")
    paths = make_org(tmp_path / "org", address, budget=0.5)
    ctx = experiments.load_context(paths)
    exp = queue_head(paths)
    executors.executor_for(ctx.spec).spawn_worker(paths, exp)
    retry_until(lambda: row(paths, exp)["verdict"] not in ledger.UNFINISHED, timeout=180, interval=1,
                message="the run through Ray Client")
    done = row(paths, exp)
    assert done["verdict"] == "ok", (done["verdict"], (paths.runs / exp / "runner.log").read_text()[-2000:])
    assert done["executor"] == "ray" and done["node"] and done["metric"] is not None
    assert "evaluation by the protected evaluator" in (paths.runs / exp / "log").read_text()
