"""GPU leases are per physical device: overlapping slots ([0], [1], [0,1], [1,0]) never run two things on one GPU,
on a machine whose `nvidia-smi` is a script reporting two GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoorg.errors import SpecError
from autoorg.experiments import ledger
from autoorg.spec import load_org
from autoorg.testing import retry_until
from autoorg.testing.experiments import start_org
from tests.exp_support import add_synthetic
from tests.test_org import fake_nvidia_smi


def test_a_gpu_listed_twice_in_one_slot_is_a_spec_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("agents:\n  - {name: alice, slots: [0]}\n  - {name: bob, slots: [0, 0]}\n")
    with pytest.raises(SpecError, match=r"org\.yaml:3: agent 'bob': GPU 0 listed twice in its slots"):
        load_org(str(path))


def test_overlapping_gpu_slots_never_share_a_device(repo: Path, tmux_socket: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", 2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    add_synthetic(repo, budget=0.3)
    agents = {"solo0": [0], "solo1": [1], "pair": [0, 1], "riap": [1, 0]}
    paths = start_org(repo, tmux_socket, tmp_path, baseline=2, repeats=2,
                      extra={"agents": [{"name": n, "slots": s} for n, s in agents.items()]})
    procs = [subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "submit", "-m", f"try {name} {i}"],
                              cwd=paths.worktree(name), stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "AUTOORG_AGENT": name, "AUTOORG_HOME": str(paths.home)})
             for i in range(2) for name in agents]
    exps = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        exps.append(out.split()[0])
    retry_until(lambda: all((paths.runs / e / "result.json").is_file() for e in exps), timeout=180,
                message="all eight experiments to finish")

    spans = []  # (start, end, devices) of every finished run, the gate's baselines included
    for row in ledger.experiments(paths):
        result = paths.runs / row["exp"] / "result.json"
        if result.is_file() and row["slot"]:
            times = json.loads(result.read_text())["times"]
            devices = set(row["slot"].removeprefix("gpu").split("+"))
            spans.append((times["spawned"], times["exited"], devices, row["exp"], row["slot"]))
    assert len(spans) >= len(exps)
    assert {s[4] for s in spans} >= {"gpu0", "gpu1", "gpu0+1", "gpu1+0"}
    for i, (start, end, devices, exp, slot) in enumerate(spans):
        for start2, end2, devices2, exp2, slot2 in spans[i + 1:]:
            if start < end2 and start2 < end:
                assert not devices & devices2, f"{exp} on {slot} and {exp2} on {slot2} overlapped on a GPU"
