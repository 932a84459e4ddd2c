"""The runner through the real CLI and real processes: commits, refusals, crashes, budget, slots, setup."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from autoorg import comms, experiments, gate
from autoorg.compute import slots
from autoorg.experiments import ledger, process
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.testing import git, retry_until, run_cli
from autoorg.testing.experiments import TRAIN, drive_gate, set_knobs, start_org
from tests.exp_support import add_synthetic


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo)
    return start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)


@pytest.fixture
def unprotected(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    """The synthetic task without its evaluator: training's own final line is the metric (tests that replace
    train.py wholesale check how a training run itself is judged)."""
    add_synthetic(repo, evaluator=False)
    return start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)


def agent_env(paths: OrgPaths, agent: str) -> dict[str, str]:
    return {"AUTOORG_AGENT": agent, "AUTOORG_HOME": str(paths.home)}


def exp_run(paths: OrgPaths, agent: str, *args: str) -> tuple[int, str, str]:
    proc = run_cli("exp", "run", *args, cwd=paths.worktree(agent), env=agent_env(paths, agent), timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def replace_train(paths: OrgPaths, agent: str, body: str) -> None:
    (paths.worktree(agent) / TRAIN).write_text(body)


def test_exp_run_commits_runs_and_records_everything(org: OrgPaths) -> None:
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.004)
    rc, out, err = exp_run(org, "alice", "-m", "lr 0.004", "--seed", "7")
    assert rc == 0, err
    row = ledger.experiments(org, kinds=("exp",))[0]
    exp = row["exp"]
    assert out.startswith(f"{exp} (lr 0.004): val_loss ")
    assert "→" in out
    worktree = org.worktree("alice")
    assert git(worktree, "log", "-1", "--format=%s %an") == "lr 0.004 alice"
    assert row["commit_sha"] == git(worktree, "rev-parse", "HEAD")
    assert row["seed"] == 7 and row["slot"] in {s.name for s in slots.cpu_slots()}
    assert row["head"] == git(org.repo, "rev-parse", "org/t") and row["parent"] == row["head"]
    assert row["diff_stat"].startswith("1 file changed") and len(row["org_code"]) == 12
    run_dir = org.runs / exp
    assert "LEARNING_RATE = 0.004" in (run_dir / "diff.patch").read_text()
    assert "trained" in (run_dir / "log").read_text()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["final"] is True and len(metrics) == 5
    result = json.loads((run_dir / "result.json").read_text())
    assert result["metric"] == row["metric"] == metrics[-1]["val_loss"]
    # result.json is the run as it landed; a candidate's verification may have started since (exp run steps the gate)
    assert result["verdict"] in {row["verdict"], "candidate"} and result["metric_name"] == "val_loss"
    assert not (run_dir / "src").exists()  # the exact-commit snapshot is removed after the run
    status = comms.read_status(org, "alice")
    assert status is not None and status["state"] != "running"
    tsv = org.results_tsv.read_text().splitlines()
    assert tsv[0].startswith("commit\tval_loss\tmemory_gb\tstatus\tdescription")
    assert any(line.startswith(row["commit_sha"][:7]) for line in tsv[1:])


def test_submit_returns_at_once_and_the_result_arrives_as_a_message(org: OrgPaths) -> None:
    replace_train(org, "bob", (org.worktree("bob") / TRAIN).read_text().replace("0.9 * args.budget", "3.0"))
    proc = run_cli("exp", "submit", "-m", "slow run", cwd=org.worktree("bob"), env=agent_env(org, "bob"))
    assert proc.returncode == 0, proc.stderr
    exp = re.match(r"(e\d+) submitted", proc.stdout)[1]  # type: ignore[index]
    assert ledger.get_experiment(org, exp)["verdict"] in ("queued", "running")
    retry_until(lambda: (comms.read_status(org, "bob") or {}).get("state") == "running", timeout=30,
                message="bob's status to be running")
    msgs = retry_until(lambda: [m for m in comms.read_inbox(org, "bob") if m.kind == "result" and m.exp == exp],
                       timeout=60, message="the result message")
    assert msgs[0].body.startswith(f"{exp} (slow run)")
    assert retry_until(lambda: (comms.read_status(org, "bob") or {}).get("state") != "running", timeout=10)


def test_a_protected_or_outside_path_is_refused_and_nothing_is_committed(org: OrgPaths) -> None:
    worktree = org.worktree("alice")
    before = git(worktree, "rev-parse", "HEAD")
    (worktree / "examples/synthetic/landscape.py").write_text("# easier\n")
    (worktree / "README.md").write_text("changed\n")
    rc, out, err = exp_run(org, "alice", "-m", "cheat")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("autoorg: refused")
    assert "examples/synthetic/landscape.py (protected)" in err and "README.md (not editable)" in err
    assert git(worktree, "rev-parse", "HEAD") == before
    assert "landscape.py" in git(worktree, "status", "--porcelain")
    assert ledger.experiments(org, kinds=("exp",)) == []


def test_new_files_outside_the_editable_paths_are_left_alone(org: OrgPaths) -> None:
    worktree = org.worktree("alice")
    (worktree / "notes.txt").write_text("ideas\n")
    (worktree / "examples/synthetic/__pycache__").mkdir()
    (worktree / "examples/synthetic/__pycache__/landscape.cpython-311.pyc").write_bytes(b"\0")
    set_knobs(worktree, WEIGHT_DECAY=0.1)
    rc, _, err = exp_run(org, "alice", "-m", "wd 0.1")
    assert rc == 0, err
    assert git(worktree, "show", "--name-only", "--format=", "HEAD") == TRAIN
    assert (worktree / "notes.txt").exists() and "notes.txt" in git(worktree, "status", "--porcelain")


def test_outside_an_agent_worktree_is_one_line(org: OrgPaths) -> None:
    proc = run_cli("exp", "run", "-m", "x", cwd=org.repo)
    assert proc.returncode == 2
    assert proc.stderr.startswith("autoorg: not in an agent's worktree") and proc.stderr.count("\n") == 1
    proc = run_cli("exp", "run", "-m", "x", cwd=org.repo, env={"AUTOORG_AGENT": "zed", "AUTOORG_HOME": str(org.home)})
    assert proc.returncode == 2 and "AUTOORG_AGENT=zed is not an agent" in proc.stderr


def test_no_org_at_all_is_one_line(repo: Path) -> None:
    proc = run_cli("exp", "run", "-m", "x", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.startswith("autoorg: no org in") and proc.stderr.count("\n") == 1


def test_a_run_that_never_prints_the_metric_is_a_crash_with_its_log_kept(unprotected: OrgPaths) -> None:
    replace_train(unprotected, "alice", "print('warming up')\nprint('@metric {\"step\": 1}')\n")
    rc, out, err = exp_run(unprotected, "alice", "-m", "forgot the metric")
    assert rc == 2
    exp = ledger.experiments(unprotected, kinds=("exp",))[0]["exp"]
    assert err.strip().splitlines()[-1].startswith(f"autoorg: {exp} crash: metric never printed")
    assert "log kept:" in out and "last line: @metric" in out
    assert "warming up" in (unprotected.runs / exp / "log").read_text()
    assert ledger.get_experiment(unprotected, exp)["verdict"].startswith("crash: metric never printed")


def test_a_failing_command_says_its_exit_code(org: OrgPaths) -> None:
    replace_train(org, "alice", "import sys\nprint('boom')\nsys.exit(3)\n")
    rc, _, _ = exp_run(org, "alice", "-m", "breaks")
    assert rc == 2
    assert ledger.experiments(org, kinds=("exp",))[0]["verdict"] == "crash: exit 3"


OVER_BUDGET = """\
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", "MARKER"])
print("@metric {\\"step\\": 1}", flush=True)
time.sleep(1000)
"""


def test_over_budget_kills_the_whole_process_group(org: OrgPaths) -> None:
    marker = f"child-{uuid.uuid4().hex}"  # a sealed run has its own pid namespace: found by its command line
    replace_train(org, "alice", OVER_BUDGET.replace("MARKER", marker))
    proc = run_cli("exp", "run", "-m", "never ends", "--budget", "0.5", cwd=org.worktree("alice"),
                   env=agent_env(org, "alice"), timeout=60)
    assert proc.returncode == 2
    row = ledger.experiments(org, kinds=("exp",))[0]
    assert row["verdict"].startswith("crash: over budget")
    assert row["wall_s"] < 30
    retry_until(lambda: not live_with(marker), timeout=10, message="the run's child to be killed")


def live_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds marker."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes() \
                    and _state(int(entry.name)) not in ("Z", "gone"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_reported_training_past_the_budget_is_not_compared(unprotected: OrgPaths) -> None:
    replace_train(unprotected, "alice", 'print(\'@metric {"final": true, "val_loss": 0.5, "train_s": 9.0}\')\n')
    rc, out, _ = exp_run(unprotected, "alice", "-m", "trains too long")
    assert rc == 0
    assert ledger.experiments(unprotected, kinds=("exp",))[0]["verdict"].startswith("over budget")
    assert "not compared" in out


def test_runs_are_pinned_to_one_core_with_thread_limits(unprotected: OrgPaths) -> None:
    replace_train(unprotected, "alice", "import json, os\nprint('@metric ' + json.dumps({'final': True, 'val_loss': 1.0, "
                  "'cores': len(os.sched_getaffinity(0)), 'omp': os.environ['OMP_NUM_THREADS'], "
                  "'cuda': os.environ['CUDA_VISIBLE_DEVICES'], 'exp': os.environ['AUTOORG_EXP']}))\n")
    rc, _, err = exp_run(unprotected, "alice", "-m", "where am I")
    assert rc == 0, err
    row = ledger.experiments(unprotected, kinds=("exp",))[0]
    assert row["metrics"]["cores"] == 1 and row["metrics"]["omp"] == "1" and row["metrics"]["cuda"] == ""
    assert row["metrics"]["exp"] == row["exp"]


def test_autoresearch_style_lines_are_understood() -> None:
    assert process.parse_metric_line("val_bpb:          0.997900") == ("plain", {"val_bpb": 0.9979})
    assert process.parse_metric_line('@metric {"step": 3}') == ("metric", {"step": 3})
    assert process.parse_metric_line("@metric {broken") is None
    assert process.parse_metric_line("step 3/100 loss 2.1") is None
    finals = process.final_metrics([], {"val_bpb": 0.9979, "training_seconds": 300.1, "num_steps": 953,
                                       "total_tokens_M": 499.6, "peak_vram_mb": 45060.2}, "val_bpb")
    assert finals is not None
    assert finals["train_s"] == 300.1 and finals["steps"] == 953 and finals["tokens"] == pytest.approx(499.6e6)
    assert finals["memory_gb"] == pytest.approx(44.0, abs=0.01)
    assert process.final_metrics([{"step": 1}], {}, "val_bpb") is None


def test_the_task_setup_runs_once_per_org(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    task = repo / "examples/synthetic/task.yaml"
    add_synthetic(repo)
    task.write_text(task.read_text() + 'setup: "mkdir -p $AUTOORG_DATA && echo ran >> $AUTOORG_DATA/setup.count"\n')
    git(repo, "commit", "-qam", "setup")
    paths = start_org(repo, tmux_socket, tmp_path, agents=2, baseline=2)
    for agent in ("alice", "bob"):
        assert exp_run(paths, agent, "-m", "same")[0] == 0
    assert (Path(os.environ["AUTOORG_DATA"]) / "setup.count").read_text() == "ran\n"


def test_a_missing_task_file_or_command_is_one_line(org: OrgPaths) -> None:
    task_file = Path(json.loads(org.state_json.read_text())["task"])
    text = task_file.read_text()
    task_file.write_text(re.sub(r'(?m)^run: .*$', 'run: {gpu: "{python} x.py"}', text))
    assert load_task(task_file).run == {"gpu": "{python} x.py"}
    rc, _, err = exp_run(org, "alice", "-m", "x")
    assert rc == 2 and "no run command for cpu slots" in err
    task_file.unlink()
    rc, _, err = exp_run(org, "alice", "-m", "x")
    assert rc == 2 and "task file" in err and "missing" in err and err.count("\n") == 1


def test_eight_agents_submitting_at_once_never_share_a_slot(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=0.2)
    paths = start_org(repo, tmux_socket, tmp_path, agents=8, baseline=2)
    state = json.loads(paths.state_json.read_text())
    exps = []
    procs = [subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "submit", "-m", f"try {name}"],
                              cwd=paths.worktree(name), env={**os.environ, **agent_env(paths, name)},
                              stdout=subprocess.PIPE, text=True)
             for name in state["agents"]]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        exps.append(out.split()[0])
    retry_until(lambda: all((paths.runs / e / "result.json").is_file() for e in exps), timeout=120,
                message="all eight experiments to finish")
    rows = ledger.experiments(paths)
    assert {r["exp"] for r in rows} >= set(exps) and len({r["agent"] for r in rows if r["kind"] == "exp"}) == 8
    intervals: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if not (paths.runs / r["exp"] / "result.json").is_file():
            continue  # a gate run still going
        times = json.loads((paths.runs / r["exp"] / "result.json").read_text())["times"]
        intervals.setdefault(r["slot"], []).append((times["spawned"], times["exited"]))
    assert set(intervals) <= {s.name for s in slots.cpu_slots()}
    for slot, spans in intervals.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"two runs overlapped on {slot}"


def test_a_runner_that_died_is_recorded_as_a_crash(org: OrgPaths) -> None:
    ctx = experiments.load_context(org)
    head = ctx.program_head()
    exp = experiments.queue_run(ctx, kind="exp", agent="alice", commit=head, head=head, description="orphan", seed=1,
                           budget=ctx.task.budget["cpu"], slot_class="cpu")
    dead = subprocess.Popen(["true"])
    dead.wait()
    ledger.update_experiment(org, exp, verdict="running", pid=dead.pid, pid_start="1")
    drive_gate(org, lambda: ledger.get_experiment(org, exp)["verdict"] == "crash: runner died", timeout=30)


def test_exp_baseline_and_gate_once_from_the_cli(org: OrgPaths) -> None:
    proc = run_cli("gate", "--once", cwd=org.repo)
    assert proc.returncode == 0
    proc = run_cli("exp", "baseline", "--repeats", "3", cwd=org.repo, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"cpu: val_loss mean 1\.\d+ over \d+ runs of [0-9a-f]{10}; noise σ 0\.\d+ \(dof \d+\)",
                    proc.stdout), proc.stdout
    runs = [r for r in ledger.experiments(org) if r["kind"] == "baseline"]
    assert len(runs) >= 3, runs
    assert all(r["verdict"] == "ok" for r in runs if r["verdict"] not in ledger.UNFINISHED), \
        [(r["exp"], r["verdict"], r["wall_s"]) for r in runs]
    table = run_cli("results", "--all", cwd=org.repo).stdout
    assert "head on cpu: mean" in table and "baseline" in table


def test_down_cancels_detached_runs_and_kills_their_processes(org: OrgPaths) -> None:
    marker = f"child-{uuid.uuid4().hex}"
    replace_train(org, "bob", OVER_BUDGET.replace("MARKER", marker))
    # a long budget: the run is still on its slot (not killed as over budget) when `down` comes, on any load
    proc = run_cli("exp", "submit", "-m", "long", "--budget", "60", cwd=org.worktree("bob"),
                   env=agent_env(org, "bob"))
    exp = proc.stdout.split()[0]
    retry_until(lambda: live_with(marker), timeout=30, message="the run to start")
    down = run_cli("down", env={"AUTOORG_HOME": str(org.home)})
    assert down.returncode == 0, down.stderr
    stopped = next(line for line in down.stdout.splitlines() if "queued or running experiment(s)" in line)
    assert exp in stopped.split(": ", 1)[1].split(" (")[0].split(", ")  # with the gate's baseline runs, if any
    assert ledger.get_experiment(org, exp)["verdict"] == "cancelled: the org was stopped"
    retry_until(lambda: not live_with(marker), timeout=15, message="the run's processes to be killed")
    assert ledger.get_experiment(org, exp)["verdict"] == "cancelled: the org was stopped"


def test_concurrent_submits_from_one_worktree_all_queue(org: OrgPaths) -> None:
    exps: list[str] = []
    for round_ in range(3):  # each round a new change, committed by whichever submit comes first
        set_knobs(org.worktree("alice"), LEARNING_RATE=0.005 + round_ / 1000)
        procs = [subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "submit", "-m", f"try {round_}.{i}"],
                                  cwd=org.worktree("alice"), env={**os.environ, **agent_env(org, "alice")},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(8)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        assert [(rc, err) for rc, _, err in results if rc != 0] == []
        exps += [out.split()[0] for _, out, _ in results]
        assert git(org.worktree("alice"), "status", "--porcelain") == ""
    assert {r["exp"] for r in ledger.experiments(org, kinds=("exp",), agent="alice")} == set(exps)
    assert len(set(exps)) == 24


def test_a_run_started_during_a_hold_leaves_release_in_charge(org: OrgPaths) -> None:
    comms.report_status(org, "alice", "idle")
    assert run_cli("take", "alice", env={"AUTOORG_HOME": str(org.home)}).returncode == 0
    rc, _, err = exp_run(org, "alice", "-m", "typed by the person holding alice")
    assert rc == 0, err
    status = comms.read_status(org, "alice")
    assert status and (status["state"], status["reported"]) == ("human", "idle")
    assert run_cli("release", "alice", env={"AUTOORG_HOME": str(org.home)}).returncode == 0
    assert (comms.read_status(org, "alice") or {}).get("state") == "idle"


def test_the_board_counts_every_baseline_and_shows_a_crash_as_a_crash(org: OrgPaths) -> None:
    ctx = experiments.load_context(org)
    head = ctx.program_head()
    for seed in (101, 102):  # the gate's baselines, run as an exp worker runs them
        exp = experiments.queue_run(ctx, kind="baseline", agent="gate", commit=head, head=head,
                                    description="baseline", seed=seed, budget=ctx.task.budget["cpu"],
                                    slot_class="cpu")
        assert gate.run_experiment(ctx, exp)["verdict"] == "ok"

        def counted() -> bool:  # the org's daemon may land baselines of its own meanwhile: read until they agree
            board = comms.read_board(org)
            n = gate.head_stats(ctx, head, "cpu").n
            return f" over {n} run{'s' if n > 1 else ''}" in board and (n > 1 or " over 1 runs" not in board)
        retry_until(counted, timeout=30, message="the board to count every baseline")
    replace_train(org, "alice", "raise SystemExit('broken on purpose')\n")
    rc, _, _ = exp_run(org, "alice", "-m", "a broken train.py")
    crashed = ledger.experiments(org, agent="alice", kinds=("exp",))[-1]
    assert crashed["verdict"].startswith("crash"), crashed["verdict"]
    line = next(line for line in comms.read_board(org).splitlines() if line.startswith(f"- {crashed['exp']} "))
    assert line.endswith(f"({crashed['verdict']})") and "(running)" not in line


def test_release_during_a_run_started_in_the_hold_sticks_when_the_run_ends(org: OrgPaths) -> None:
    """A Claude Code or Codex agent's person types `exp run` while holding it, then releases it mid-run."""
    env = {"AUTOORG_HOME": str(org.home)}
    comms.report_status(org, "alice", "idle")
    assert run_cli("take", "alice", env=env).returncode == 0
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.003)
    worker = subprocess.Popen([sys.executable, "-m", "autoorg", "exp", "run", "-m", "typed during the hold"],
                              cwd=org.worktree("alice"), env={**os.environ, **agent_env(org, "alice")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        retry_until(lambda: ledger.experiments(org, agent="alice", kinds=("exp",)), timeout=60,
                    message="the run queued during the hold")
        assert run_cli("release", "alice", env=env).returncode == 0
        assert worker.wait(timeout=120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    status = comms.read_status(org, "alice") or {}
    assert status.get("state") not in comms.HELD_STATES, status  # the run's end did not bring the hold back
