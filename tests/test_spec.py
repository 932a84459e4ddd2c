"""Org and task specs: presets, YAML stages, and errors that name file, line and the nearest valid key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoorg.errors import SpecError, SpecProblems
from autoorg.spec import (
    Baseline,
    Gate,
    Processes,
    Restart,
    Standup,
    expand_preset,
    find_task,
    load_org,
    load_task,
)
from autoorg.testing import run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_preset_8x1gpu_pins_one_gpu_each() -> None:
    spec = load_org("8x1gpu")
    assert spec.tag == "8x1gpu"
    assert [a.name for a in spec.agents][:3] == ["alice", "bob", "carol"]
    assert [a.slots for a in spec.agents] == [[str(i)] for i in range(8)]
    assert all(a.backend == "auto" and a.role == "researcher" for a in spec.agents)


def test_preset_4x2gpu_gives_disjoint_pairs() -> None:
    spec = load_org("4x2gpu")
    assert [a.gpus for a in spec.agents] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_preset_cpu_and_chief() -> None:
    spec = load_org("chief+3xcpu")
    assert spec.tag == "chief-3xcpu"
    assert [(a.name, a.role, a.slot_class) for a in spec.agents] == [
        ("chief", "chief", "none"), ("r1", "researcher", "cpu"), ("r2", "researcher", "cpu"),
        ("r3", "researcher", "cpu")]


def test_large_preset_names_stay_unique() -> None:
    spec = load_org("32xcpu")
    assert len(set(spec.names)) == 32


def test_backend_override_and_command() -> None:
    spec = load_org("2xcpu", backend="command", command="bash")
    assert {(a.backend, a.command) for a in spec.agents} == {("command", "bash")}


def test_resolved_spec_round_trips(tmp_path: Path) -> None:
    spec = load_org(str(EXAMPLES / "cpu-team.yaml"))
    out = tmp_path / "org.yaml"
    out.write_text(spec.to_yaml())
    again = load_org(str(out))
    assert again.to_dict() == spec.to_dict()
    assert again.processes == spec.processes


def test_processes_are_typed_with_defaults_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("agents: [alice]\nprocesses:\n  standup: {every: 30m}\n  gate: {repeats: 3, z: 2}\n"
                    "  restart: {backoff: 0.2s}\n")
    spec = load_org(str(path))
    assert spec.processes == Processes(standup=Standup(every=1800.0), gate=Gate(repeats=3, z=2.0),
                                       baseline=Baseline(repeats=4), restart=Restart(limit=3, backoff=0.2))
    out = tmp_path / "resolved.yaml"
    out.write_text(spec.to_yaml())
    assert load_org(str(out)).processes == spec.processes
    assert load_org("2xcpu").processes == Processes()


def test_every_example_loads() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        load_org(str(path))


@pytest.mark.parametrize("text, fragment", [
    ("agents:\n  - {name: alice, slotz: [0]}\n", ":2: unknown key 'slotz' in agents[0]; did you mean 'slots'?"),
    ("tag: x\nagnets: []\n", ":2: unknown key 'agnets' in the org; did you mean 'agents'?"),
    ("agents:\n  - {name: Alice}\n", "not a safe identifier"),
    ("agents:\n  - {name: ../x}\n", "not a safe identifier"),
    ("agents:\n  - {name: all}\n", "reserved"),
    ("agents:\n  - alice\n  - alice\n", ":3: agent name 'alice' appears twice (first at line 2)"),
    ("agents:\n  - {name: bob}\n  - bob\n", ":3: agent name 'bob' appears twice (first at line 2)"),
    ("agents:\n  - {name: alice, backend: claud}\n", "did you mean 'claude'?"),
    ("agents:\n  - {name: alice, backend: command}\n", "needs a command"),
    ("agents:\n  - {name: alice, slots: [gpu0]}\n", "bad slot 'gpu0'"),
    ("agents:\n  - {name: alice, slots: [cpu, 1]}\n", "cannot be mixed"),
    ("agents:\n  - {name: alice, role: boss}\n", "unknown role 'boss'"),
    ("agents: []\n", "non-empty list of agents"),
    ("tag: Bad Tag\nagents: [alice]\n", "not a safe name"),
    ("agents: [alice]\nprocesses:\n  standup: {every: soon}\n", "bad interval 'soon'"),
    ("agents: [alice]\nprocesses:\n  standpu: {}\n", "did you mean 'standup'?"),
    ("agents: [alice]\nprocesses:\n  gate: {repaets: 3}\n", ":3: unknown key 'repaets' in processes.gate; did you mean 'repeats'?"),
    ("agents: [alice]\nprocesses:\n  gate:\n    repeats: eight\n", ":4: processes.gate.repeats must be a whole number >= 1, got 'eight'"),
    ("agents: [alice]\nprocesses:\n  gate: {repeats: 0}\n", ":3: processes.gate.repeats must be a whole number >= 1"),
    ("agents: [alice]\nprocesses:\n  gate: {z: -1}\n", ":3: processes.gate.z must be a number > 0"),
    ("agents: [alice]\nprocesses:\n  gate: {floor: x}\n", ":3: processes.gate.floor must be a number >= 0"),
    ("agents: [alice]\nprocesses:\n  baseline: {repeats: 1}\n", ":3: processes.baseline.repeats must be a whole number >= 2"),
    ("agents: [alice]\nprocesses:\n  restart: {limit: -1}\n", ":3: processes.restart.limit must be a whole number >= 0"),
    ("agents: [alice]\nprocesses:\n  restart:\n    backoff: later\n", ":4: bad interval 'later'"),
    ("agents:\n  - {name: alice\n", "YAML syntax error"),
    ("- just\n- a list\n", "the org must be a mapping"),
    ("agents:\n  - name: alice\n    env:\n      THREADS: 4\n", ":4: agent 'alice': env THREADS must be a string"),
    ("agents:\n  - name: alice\n    env:\n      A: ok\n      B: [1, 2]\n", ":5: agent 'alice': env B must be a"),
    ("agents:\n  - name: alice\n    env:\n      BAD-KEY: x\n", ":4: agent 'alice': env key 'BAD-KEY' is not a"),
    ("defaults:\n  env:\n    1X: y\nagents: [alice]\n", ":3: agent 'alice': env key '1X' is not a variable"),
])
def test_spec_errors_name_file_line_and_fix(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_org(str(path))
    assert fragment in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("tag: x\nagents:\n  - {name: alice\n")
    with pytest.raises(SpecError, match=r"org\.yaml:\d+:\d+: YAML syntax error"):
        load_org(str(path))


@pytest.mark.parametrize("preset", ["8x0gpu", "0xcpu", "x1gpu", "8xtpu", "999xcpu"])
def test_bad_presets(preset: str) -> None:
    with pytest.raises(SpecError):
        expand_preset(preset)


def test_unknown_target_is_unknown_preset() -> None:
    with pytest.raises(SpecError, match="unknown preset 'eightgpus'"):
        load_org("eightgpus")


@pytest.mark.parametrize("typo, meant", [("4xcpux", "4xcpu"), ("4xgpu", "4x1gpu"), ("8gpu", "8x1gpu"),
                                         ("chief7x1gpu", "chief+7x1gpu"), ("2x2gpus", "2x2gpu")])
def test_an_unknown_preset_gets_a_did_you_mean(typo: str, meant: str) -> None:
    with pytest.raises(SpecError, match=f"unknown preset '{re.escape(typo)}'; did you mean '{re.escape(meant)}'"):
        load_org(typo)


def test_a_file_with_several_problems_reports_each_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("tag: several\n"
                    "agents:\n"
                    "  - {name: r1, slots: cpu, backnd: heuristic}\n"
                    "  - {name: r2, slots: cpu}\n"
                    "  - {name: r2, slots: cpu}\n"
                    "  - {name: r3, slots: cpu, role: boss}\n"
                    "processes:\n"
                    "  standup: {every: banana}\n")
    with pytest.raises(SpecProblems) as err:
        load_org(str(path))
    lines = str(err.value).splitlines()
    assert lines[0] == "4 problems:"
    assert sorted(lines[1:]) == sorted([
        f"  {path}:3: unknown key 'backnd' in agents[0]; did you mean 'backend'?",
        f"  {path}:5: agent name 'r2' appears twice (first at line 4)",
        f"  {path}:6: agent 'r3': unknown role 'boss'; roles: researcher, chief, worker, critic",
        f"  {path}:8: bad interval 'banana'; use 90s, 30m or 2h"])
    proc = run_cli("up", str(path), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == "autoorg: 4 problems:" and len(proc.stderr.splitlines()) == 5


def test_missing_yaml_file() -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_org("nope/org.yaml")


def test_task_loads_and_finds(repo: Path) -> None:
    task = load_task(find_task(repo, "tiny"))
    assert task.name == "tiny"
    assert task.editable == ["tiny/train.py"]
    assert task.budget == {"cpu": 10.0, "gpu": 10.0}
    assert task.better(0.5, 1.0)
    assert task.knobs[0].file == "tiny/train.py"


def test_metric_direction_lives_on_the_task(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("name: t\neditable: [a.py]\nrun: x\nmetric: {name: acc, direction: maximize}\nbudget: 5\n")
    up = load_task(path)
    assert up.improvement(0.9, 0.8) == pytest.approx(0.1) and up.better(0.9, 0.8) and not up.better(0.8, 0.8)
    assert up.arrow == "↑"
    path.write_text("name: t\neditable: [a.py]\nrun: x\nmetric: loss\nbudget: 5\n")
    down = load_task(path)
    assert down.improvement(0.8, 0.9) == pytest.approx(0.1) and down.better(0.8, 0.9) and not down.better(0.9, 0.8)
    assert down.arrow == "↓"


def test_a_relative_task_path_is_the_repos_before_the_current_folders(repo: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for root in (repo, tmp_path / "elsewhere"):
        (root / "t").mkdir(parents=True)
        (root / "t" / "task.yaml").write_text("name: t\neditable: [a.py]\nrun: x\nmetric: m\nbudget: 5\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert find_task(repo, "t/task.yaml") == (repo / "t" / "task.yaml").resolve()
    (repo / "t" / "task.yaml").unlink()
    assert find_task(repo, "t/task.yaml") == (tmp_path / "elsewhere" / "t" / "task.yaml").resolve()


def test_unknown_task(repo: Path) -> None:
    with pytest.raises(SpecError, match="no task 'nope'"):
        find_task(repo, "nope")


def test_task_errors(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("name: t\neditable: [a.py]\nrun: x\nmetric: {name: m, direction: down}\nbudget: 5\n")
    with pytest.raises(SpecError, match="direction 'down'"):
        load_task(path)
    path.write_text("name: t\neditable: [a.py]\nrun: x\nmetric: m\nbudget: 0\n")
    with pytest.raises(SpecError, match="positive number of seconds"):
        load_task(path)
    path.write_text("name: t\neditable: [a.py]\nrun: x\nmetric: m\nbudget: 5\nknobs:\n  - {name: K, type: float}\n")
    with pytest.raises(SpecError, match="needs low and high"):
        load_task(path)
