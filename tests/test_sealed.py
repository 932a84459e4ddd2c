"""Sealed runs on real processes: what a run can write, what it inherits, what outlives it, and the compute the
harness measures (experiments/sandbox.py, process.py, run.judge_outcome)."""

from __future__ import annotations

import json
import os
import random
import shutil
import site
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from autoorg import experiments, gate
from autoorg.errors import SpecError
from autoorg.experiments import leaks, ledger, process, run
from autoorg.experiments.sandbox import NAMESPACES, SEAL_ENV, SUBREAPER, Sealing, seal_mode
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.experiments import TRAIN, start_org
from tests.exp_support import TRIES_THE_ORG, add_synthetic

SECRET = "sk-test-not-for-runs"

# A run that tries to write everything it must not, starts a helper in its own session (which holds the run's
# environment), waits for the test to look at that helper, and reports what it managed to write. Its loss is
# worse than the head's: a candidate's verification would run the same script (and its helpers) again at once.
HOSTILE = """\
import json, os, sqlite3, subprocess, sys, time
from pathlib import Path
home, repo, data = Path(@HOME@), Path(@REPO@), Path(@DATA@)
""" + TRIES_THE_ORG + """\
attempt("data", lambda: (data / "planted").write_text("x"))
attempt("run folder", lambda: Path("mine").write_text("x"))
attempt("temp", lambda: (Path(os.environ["TMPDIR"]) / "t").write_text("x"))
attempt("own home", lambda: (Path(os.environ["HOME"]) / ".cache").mkdir())
for name, folder in (("/tmp", "/tmp"), ("user's home", @USERHOME@), ("shm", "/dev/shm")):
    attempt(name, lambda: (Path(folder) / ("planted-" + @MARKER@)).write_text("x"))
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", @MARKER@], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 60
while not Path("release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("@metric " + json.dumps({"final": True, "val_loss": 9.0, "train_s": 0.1, "wrote": wrote}), flush=True)
"""


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo, grace=60, evaluator=False)  # its train.py is replaced wholesale
    return start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)


def live_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds marker."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes() \
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def run_hostile(org: OrgPaths, seal: str) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """Run HOSTILE through `exp run` under `seal`; (its ledger row, the live helper's environment, the files it
    planted outside its run folder that we found, and removed, afterwards)."""
    marker = f"helper-{uuid.uuid4().hex}"
    body = HOSTILE
    planted = [Path(folder) / f"planted-{marker}" for folder in ("/tmp", Path.home(), "/dev/shm")]
    for name, value in (("HOME", org.home), ("REPO", org.repo), ("DATA", os.environ["AUTOORG_DATA"]),
                        ("MARKER", marker), ("USERHOME", Path.home())):
        body = body.replace(f"@{name}@", repr(str(value)))
    (org.worktree("alice") / TRAIN).write_text(body)
    env = {"AUTOORG_AGENT": "alice", "AUTOORG_HOME": str(org.home), "ANTHROPIC_API_KEY": SECRET,
           "TMUX": "/tmp/tmux-0/x,1,0", SEAL_ENV: seal}
    cli = subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "run", "-m", "hostile"],
                           cwd=org.worktree("alice"), env={**os.environ, **env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        helper = retry_until(lambda: live_with(marker), timeout=60, message="the run's helper to start")[0]
        seen = environ(helper)
        Path(os.readlink(f"/proc/{helper}/cwd"), "release").write_text("")
        _, err = cli.communicate(timeout=120)
    finally:
        cli.kill()
        leaked = [str(path) for path in planted if path.exists()]
        for path in planted:
            path.unlink(missing_ok=True)
    assert cli.returncode == 0, err
    assert not live_with(marker), "the helper outlived its run"
    row = ledger.experiments(org, kinds=("exp",))[-1]
    return row, seen, leaked


def test_a_sealed_run_writes_only_its_run_folder_and_takes_its_helpers_down(org: OrgPaths) -> None:
    if seal_mode().mode != NAMESPACES:
        pytest.skip(f"no namespaces here: {seal_mode().why}")
    state_before = org.state_json.read_text()
    row, seen, leaked = run_hostile(org, NAMESPACES)
    assert row["metric"] == 9.0 and not row["verdict"].startswith(("crash", "over budget"))  # it still records
    # its own temp and home are folders of its run folder; /dev/shm is a private tmpfs that ends with the run
    assert row["metrics"]["wrote"] == ["run folder", "temp", "own home", "shm"]
    assert leaked == []
    assert row["sealed"] == NAMESPACES and row["cpu_s"] > 0 and row["gpu_s"] is None
    assert org.state_json.read_text() == state_before
    assert all(r["metric"] != 0.0 for r in ledger.experiments(org))  # the run's UPDATE did not land
    assert not (org.repo / ".git/refs/heads/planted").exists()
    assert not (Path(os.environ["AUTOORG_DATA"]) / "planted").exists()
    assert "AUTOORG_HOME" not in seen and SECRET not in seen.values() and "TMUX" not in seen
    assert seen["AUTOORG_EXP"] == row["exp"] and seen["TMPDIR"].endswith(f"runs/{row['exp']}/tmp")
    assert seen["HOME"].endswith(f"runs/{row['exp']}/home")
    assert "planted" not in git(org.repo, "branch", "--list", "planted")
    result = json.loads((org.runs / row["exp"] / "result.json").read_text())
    assert result["sealed"] == NAMESPACES and result["cpu_s"] == row["cpu_s"]


def test_without_namespaces_a_subreaper_still_kills_the_helpers_and_the_run_says_so(org: OrgPaths) -> None:
    row, seen, leaked = run_hostile(org, SUBREAPER)
    assert row["sealed"] == SUBREAPER and row["cpu_s"] > 0
    assert "AUTOORG_HOME" not in seen and SECRET not in seen.values()  # the allow-list holds either way
    assert "run folder" in row["metrics"]["wrote"] and "/tmp" in row["metrics"]["wrote"]  # nothing is read-only
    assert any(path.startswith("/tmp/") for path in leaked)
    doctor = run_cli("doctor", env={SEAL_ENV: SUBREAPER})
    assert doctor.stdout.count("runs are not sealed") == 1


def test_up_says_once_when_runs_cannot_be_sealed(repo: Path) -> None:
    add_synthetic(repo)
    (repo / "org.yaml").write_text("tag: u\ntask: synthetic\ndefaults: {backend: command, command: sleep 600}\n"
                                   "agents: [{name: alice, slots: cpu}]\n")
    git(repo, "add", "org.yaml")
    git(repo, "commit", "-qm", "org")
    up = run_cli("up", "org.yaml", "--headless", cwd=repo, env={SEAL_ENV: SUBREAPER}, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stderr.count("runs are not sealed") == 1 and "runs are not sealed" not in up.stdout
    finally:
        run_cli("down", "--tag", "u", cwd=repo, timeout=120)


# ---------------------------------------------------------------------------------------------------------------
# The budget the harness measures: CPU seconds of the process tree per allotted core

BURN = """\
import json, time
start = time.process_time()
while time.process_time() - start < {cpu}:
    pass
print("@metric " + json.dumps({{"final": True, "val_loss": 1.0, "train_s": 0.1}}), flush=True)
"""
# trains by the wall clock, like nanochat: on a shared core it gets less CPU in the same time
HONEST = """\
import json, time
start = time.monotonic()
while time.monotonic() - start < {wall}:
    pass
print("@metric " + json.dumps({{"final": True, "val_loss": 1.0, "train_s": {wall}}}), flush=True)
"""


def judged(tmp_path: Path, body: str, budget: float, startup: float, core: int) -> str:
    task_file = tmp_path / "task.yaml"
    task_file.write_text(f"name: t\neditable: [train.py]\nrun: x\nmetric: val_loss\nbudget: {budget}\n"
                         f"startup: {startup}\ngrace: 120\n")
    (tmp_path / "train.py").write_text(body)
    (tmp_path / "run").mkdir(exist_ok=True)
    out = process.run_command(f"{sys.executable} train.py", cwd=tmp_path, env=dict(os.environ), limit_s=budget + 120,
                              log_path=tmp_path / "log", metrics_path=tmp_path / "metrics.jsonl", cores=(core,),
                              sealing=Sealing(seal_mode(), tmp_path / "run", ()))
    return run.judge_outcome(load_task(task_file), out, budget, True, "exp", "cpu", 1)[0]


def test_a_run_that_burns_past_its_budget_in_cpu_is_void_and_says_why(tmp_path: Path) -> None:
    core = sorted(os.sched_getaffinity(0))[0]
    verdict = judged(tmp_path, BURN.format(cpu=2.7 * 0.5), budget=0.5, startup=0.3, core=core)
    assert verdict.startswith("over budget: ") and verdict.endswith(" CPU-s > 0.5 + 0.3"), verdict
    assert float(verdict.split()[2]) >= 1.35


def test_an_honest_run_beside_busy_loops_on_its_core_is_not_void(tmp_path: Path) -> None:
    core = sorted(os.sched_getaffinity(0))[0]
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.sched_setaffinity(
        0, (core,))) for _ in range(3)]  # noqa: PLW1509 - only a syscall
    try:
        verdict = judged(tmp_path, HONEST.format(wall=1.5), budget=1.5, startup=0.3, core=core)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert verdict == "measured", verdict


# A same-seed pair's arms train at once on neighbouring cores, each by the wall clock: a candidate that moves work
# onto the other arm's core slows the head it is compared with, and its own tree's CPU-s can stay inside the
# allowance. Each spins on another core, from a thread or from a child process, for twice its own training.
STRAYS = {
    "thread": """\
import json, os, threading, time
def hog():
    os.sched_setaffinity(0, ({other},))  # this thread only
    end = time.monotonic() + 2 * {wall}
    while time.monotonic() < end:
        pass
threading.Thread(target=hog, daemon=True).start()
""",
    "child": """\
import json, os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import os, time\\nos.sched_setaffinity(0, range(os.cpu_count()))\\n"
                  "end = time.monotonic() + 2 * {wall}\\nwhile time.monotonic() < end: pass"])
""",
}
THREADS = """\
import json, threading, time
def spin():
    end = time.monotonic() + {wall}
    while time.monotonic() < end:
        pass
threads = [threading.Thread(target=spin) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("@metric " + json.dumps({{"final": True, "val_loss": 1.0, "train_s": {wall}}}), flush=True)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a core outside the slot's")
@pytest.mark.parametrize("how", sorted(STRAYS))
def test_a_run_that_works_on_a_core_outside_its_slot_is_killed_and_void(tmp_path: Path, how: str) -> None:
    core, other = sorted(os.sched_getaffinity(0))[:2]
    body = STRAYS[how].format(other=other, wall=3.0) + HONEST.split("\n", 1)[1].format(wall=3.0)
    verdict = judged(tmp_path, body, budget=3.0, startup=30.0, core=core)
    assert verdict.startswith(f"void: left its slot's cores ({core}): process "), verdict
    assert f"last ran on core {other}" in verdict or f"may run on cores {core}, {other}" in verdict, verdict
    assert "@metric" not in (tmp_path / "log").read_text()  # killed at once: it never reached its result


def test_a_run_whose_threads_keep_to_its_core_is_not_void(tmp_path: Path) -> None:
    core = sorted(os.sched_getaffinity(0))[0]
    assert judged(tmp_path, THREADS.format(wall=1.5), budget=1.5, startup=5.0, core=core) == "measured"


def test_startup_is_a_number_or_per_slot_class_and_checked(tmp_path: Path) -> None:
    task_file = tmp_path / "task.yaml"
    base = "name: t\neditable: [train.py]\nrun: x\nmetric: val_loss\nbudget: 1\n"
    task_file.write_text(base + "startup: {cpu: 20, gpu: 60}\n")
    assert load_task(task_file).startup == {"cpu": 20.0, "gpu": 60.0}
    task_file.write_text(base)
    assert load_task(task_file).startup == {"cpu": 0.0, "gpu": 0.0}
    for bad in ("-1", "{tpu: 3}", "yes"):
        task_file.write_text(base + f"startup: {bad}\n")
        with pytest.raises(SpecError, match="startup"):
            load_task(task_file)


def test_a_run_is_told_where_the_data_cache_is_though_its_home_is_its_own(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOORG_DATA", raising=False)
    run_dir = tmp_path / "runs" / "0001"
    run_dir.mkdir(parents=True)
    env = run.run_env_for("0001", {"seed": 7, "budget": 60.0}, run_dir, run_dir / "out", {})
    assert env["HOME"] == str(run_dir / "home") and (run_dir / "home").is_dir()
    assert env["AUTOORG_DATA"] == str(Path.home() / ".cache" / "autoorg")  # the default of the org's user
    assert env["PYTHONUSERBASE"] == site.getuserbase()  # `pip install --user` packages are still found


# ---------------------------------------------------------------------------------------------------------------
# Evaluation-only data: training sees it empty, the evaluator reads it

# training that goes for the validation and held-out tokens: reads them (directly, through a link, by listing the
# folder they are in), tries to overwrite them, and keeps what it saw in its run folder
PEEKS = """\
import json, os
from pathlib import Path
data = Path(os.environ["AUTOORG_DATA"]) / "t"
seen = {}
for name in ("val.bin", "heldout.bin", "link.bin", "train.bin"):
    seen[name] = len((data / name).read_bytes())
seen["secret/"] = sorted(os.listdir(data / "secret"))
try:
    (data / "val.bin").write_text("0.01")  # into the empty view (nothing lands) or refused
except OSError:
    pass
(Path(os.environ["AUTOORG_OUT"]).parent / "seen.json").write_text(json.dumps(seen))  # the run folder
print("@metric " + json.dumps({"final": True, "val_loss": 0.01, "train_s": 0.1}), flush=True)
"""
# the protected evaluator: its metric is the number in val.bin
READS_VAL = """\
import json, os
from pathlib import Path
value = float((Path(os.environ["AUTOORG_DATA"]) / "t" / "val.bin").read_bytes().split(b"\\n")[0])
print("@metric " + json.dumps({"final": True, "val_loss": value}), flush=True)
"""


def test_training_sees_the_evaluation_data_empty_and_the_evaluator_reads_it(repo: Path, tmux_socket: str,
                                                                            tmp_path: Path) -> None:
    if seal_mode().mode != NAMESPACES:
        pytest.skip(f"no namespaces here: {seal_mode().why}")
    data = Path(os.environ["AUTOORG_DATA"]) / "t"
    (data / "secret").mkdir(parents=True)
    val = b"0.75\n" + random.Random(5).randbytes(4000)
    (data / "val.bin").write_bytes(val)
    (data / "heldout.bin").write_text("0.5")
    (data / "secret" / "split.txt").write_text("val docs")
    (data / "train.bin").write_text("train")
    (data / "link.bin").symlink_to(data / "val.bin")  # a link to a hidden file reads it empty too
    add_synthetic(repo, evaluator=False)
    task = repo / "examples/synthetic/task.yaml"
    (repo / "examples/synthetic/reads_val.py").write_text(READS_VAL)
    task.write_text(task.read_text().replace("examples/synthetic/evaluate.py]", "examples/synthetic/evaluate.py, "
                                             "examples/synthetic/reads_val.py]")
                    .replace("editable: [examples/synthetic/train.py]",
                             "editable: [examples/synthetic/train.py, examples/synthetic/extra]")
                    + 'evaluate: "{python} {task_dir}/reads_val.py"\nhidden: [t/val.bin, "t/held*", t/secret]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a task with evaluation-only data")
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    assert load_task(task).hidden == ["t/val.bin", "t/held*", "t/secret"]
    (paths.worktree("alice") / TRAIN).write_text(PEEKS)
    ctx = experiments.load_context(paths)
    exp = experiments.queue_experiment(ctx, "alice", "peeks", seed=3)
    row = gate.run_experiment(ctx, exp)
    seen = json.loads((paths.runs / exp / "seen.json").read_text())
    assert seen == {"val.bin": 0, "heldout.bin": 0, "link.bin": 0, "train.bin": 5, "secret/": []}, seen
    assert row["metric"] == 0.75, row  # the evaluator's number, from the real val.bin
    assert (data / "val.bin").read_bytes() == val
    # the agent's pane is not sealed: a copy of the data in its commit is found, whole or a slice of it
    for name, planted in (("whole.bin", val), ("slice.bin", b"header" + val[1001:1001 + 80] + b"footer")):
        extra = paths.worktree("alice") / "examples/synthetic/extra"
        shutil.rmtree(extra, ignore_errors=True)
        extra.mkdir()
        (extra / name).write_bytes(planted)
        exp = experiments.queue_experiment(ctx, "alice", f"carries {name}", seed=3)
        row = gate.run_experiment(ctx, exp)
        assert row["verdict"] == f"void: carries evaluation-only data: examples/synthetic/extra/{name} holds val.bin", \
            row["verdict"]
        assert row["metric"] is None


def test_a_copy_is_found_whole_or_as_any_slice_longer_than_the_index_stride(tmp_path: Path) -> None:
    hidden = tmp_path / "val.bin"
    data = random.Random(1).randbytes(50_000)
    hidden.write_bytes(data)
    limit = leaks.slice_limit(hidden)
    assert limit == 8 + leaks.WINDOW - 2
    assert leaks.carries(data, hidden) and leaks.carries(b"x" + data + b"y", hidden)
    for start in (0, 1, 7, 12_345, 50_000 - limit - 1):
        assert leaks.carries(b"code" + data[start:start + limit + 1] + b"more", hidden), start
    assert not leaks.carries(random.Random(2).randbytes(50_000), hidden)
    assert not leaks.carries(data[:leaks.WINDOW - 1], hidden)


def test_hidden_is_a_list_of_globs_inside_the_data_cache(tmp_path: Path) -> None:
    task_file = tmp_path / "task.yaml"
    base = "name: t\neditable: [train.py]\nrun: x\nmetric: val_loss\nbudget: 1\n"
    task_file.write_text(base + "hidden: [t/val.bin, 't/shards/*/last.parquet']\n")
    assert load_task(task_file).hidden == ["t/val.bin", "t/shards/*/last.parquet"]
    task_file.write_text(base)
    assert load_task(task_file).hidden == []
    for bad in ("[/etc/passwd]", "['../val.bin']", "[t/../../x]", "['']", "[{a: 1}]"):
        task_file.write_text(base + f"hidden: {bad}\n")
        with pytest.raises(SpecError, match="hidden: .* relative to the data cache"):
            load_task(task_file)
