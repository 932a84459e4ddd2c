"""`executor:` in the org file and `up --executor/--ray-address`: validated when the org loads (one line, exit 2),
written into the resolved org.yaml, and the example Ray org validates. No Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoorg import executors
from autoorg.errors import SpecError
from autoorg.spec import load_org
from autoorg.testing.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def org_file(tmp_path: Path, executor: str) -> Path:
    path = tmp_path / "o.yaml"
    path.write_text(f"tag: o\ntask: synthetic\nagents:\n  - {{name: alice, slots: [0, 1]}}\n{executor}")
    return path


def test_a_ray_executor_round_trips_through_the_resolved_spec(tmp_path: Path) -> None:
    spec = load_org(str(org_file(tmp_path, "executor: {kind: ray, address: 'head.example:6379', cpus: 4}\n")))
    assert (spec.executor.kind, spec.executor.address, spec.executor.cpus) == ("ray", "head.example:6379", 4)
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(spec.to_yaml())
    assert load_org(str(resolved)).executor == spec.executor
    assert executors.executor_for(spec).name == "ray"
    assert load_org("2xcpu").executor.kind == "local" and executors.executor_for(load_org("2xcpu")).name == "local"
    flags = load_org(str(org_file(tmp_path, "")), executor="ray", ray_address="ray://10.0.0.1:10001")
    assert (flags.executor.kind, flags.executor.address) == ("ray", "ray://10.0.0.1:10001")


@pytest.mark.parametrize(("executor", "says"), [
    ("executor: {kind: rya}\n", "o.yaml:5: unknown executor kind 'rya'; choose from local, ray"),
    ("executor: {kind: ray, adress: x:1}\n", "did you mean 'address'?"),
    ("executor: {kind: ray, address: 'not an address'}\n", "bad Ray address 'not an address'"),
    ("executor: {kind: local, address: 'h:1'}\n", "an address is for executor kind ray"),
    ("executor: {kind: ray, cpus: 0}\n", "executor.cpus must be a whole number"),
    ("executor: ray\n", "executor must be a mapping"),
])
def test_a_bad_executor_is_one_line_naming_the_file(tmp_path: Path, executor: str, says: str) -> None:
    with pytest.raises(SpecError) as err:
        load_org(str(org_file(tmp_path, executor)))
    assert says in str(err.value) and "\n" not in str(err.value)


def test_up_with_a_bad_executor_or_address_is_one_line_and_exit_2(repo: Path) -> None:
    for args, says in ((("--executor", "rya"), "--executor: unknown executor kind 'rya'"),
                       (("--executor", "ray", "--ray-address", "no such"), "--ray-address: bad Ray address")):
        proc = run_cli("up", "2xcpu", "--task", "tiny", "--dry-run", *args, cwd=repo)
        assert proc.returncode == 2 and proc.stderr.strip() == f"autoorg: {proc.stderr.strip()[9:]}"
        assert says in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_the_example_ray_org_validates_without_local_gpus(tmp_path: Path) -> None:
    """`up --dry-run` of examples/ray-8x8.yaml: 32 one-GPU researchers on a machine without GPUs (Ray has them)."""
    proc = run_cli("up", str(ROOT / "examples" / "ray-8x8.yaml"), "--dry-run", "--allow-dirty", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "kind: ray" in proc.stdout and "r32" in proc.stdout
