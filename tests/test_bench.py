"""`autoorg bench`: suites checked at load, figures from ledger rows, the permutation test, and a real bench of
headless orgs on the synthetic task: snapshot without history or reference, report, resume, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autoorg.bench import figures, load_suite
from autoorg.bench.cell import cell_dir
from autoorg.bench.run import Bench
from autoorg.bench.summary import permutation_p, summarise
from autoorg.errors import SpecError
from autoorg.spec import load_task
from autoorg.testing import git, retry_until, run_cli
from tests.exp_support import SYNTHETIC, add_synthetic


def _suite(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "suite.yaml"
    file.write_text(text)
    return file


def test_a_suite_is_read_with_the_baselines_added(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("agents: [{name: ann, slots: cpu}]\n")
    suite = load_suite(_suite(tmp_path, "tasks: synthetic\nrepeats: 2\nbudget: {slot_minutes: 3}\n"
                                        "orgs:\n  - {name: a, org: 2xcpu}\n  - {name: b, org: mine.yaml}\n"))
    assert [o.name for o in suite.orgs] == ["a", "b", "keep", "random", "tpe"]
    assert suite.orgs[1].target == str(tmp_path / "mine.yaml") and suite.budget_s == 180
    assert [(o.backend, o.model, o.target) for o in suite.orgs if o.baseline] == [
        ("heuristic", "keep", "1xcpu"), ("heuristic", "random", "2xcpu"), ("heuristic", "tpe", "2xcpu")]
    assert [(o.name, r) for o, _, r in suite.cells()][:5] == [("a", 1), ("b", 1), ("keep", 1), ("random", 1),
                                                               ("tpe", 1)]


def test_within_a_repeat_the_orgs_that_took_longest_start_first(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    suite = load_suite(_suite(tmp_path, "tasks: synthetic\nrepeats: 2\nbudget: {slot_minutes: 3}\n"
                                        "orgs:\n  - {name: a, org: 2xcpu}\n  - {name: b, org: 1xcpu}\n"))
    bench = Bench(suite, tmp_path / "out")

    def order() -> list[tuple[str, int]]:
        left, picked = list(bench.cells), []
        while left:
            cell = bench._next(left)
            left.remove(cell)
            picked.append((cell.org.name, cell.repeat))
        return picked

    assert order()[:5] == [("a", 1), ("b", 1), ("keep", 1), ("random", 1), ("tpe", 1)]  # none timed: as listed
    bench.walls = {"a": [100.0], "b": [300.0, 340.0], "keep": [200.0], "random": [90.0]}  # tpe never timed
    assert order() == [(o, r) for r in (1, 2) for o in ("tpe", "b", "keep", "a", "random")]


@pytest.mark.parametrize(("text", "error"), [
    ("tasks: [s]\nbudget: {slot_minutes: 1}\norgs:\n  - {name: a, org: 1xcpu, modle: x}\n",
     "suite.yaml:4: unknown key 'modle' in an org; did you mean 'model'?"),
    ("tasks: [s]\nbudget: {slot_minutes: 1}\nrepeats: 0\norgs: [{name: a, org: 1xcpu}]\n",
     "suite.yaml:3: 'repeats' must be a whole number >= 1, not 0"),
    ("tasks: [s]\nbudget: {slot_minutes: 1}\norgs: [{name: keep, org: 1xcpu}]\n", "two orgs are called 'keep'"),
    ("tasks: [s]\nbudget: {minutes: 1}\norgs: [{name: a, org: 1xcpu}]\n", "unknown key 'minutes' in budget"),
    ("tasks: [s]\nbudget: {slot_minutes: 1}\norgs: [{name: a, org: nope.yaml}]\n", "no such org file"),
])
def test_a_bad_suite_is_one_line_naming_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(SpecError, match=".*"):
        load_suite(_suite(tmp_path, text))
    out = run_cli("bench", str(tmp_path / "suite.yaml"), cwd=tmp_path)
    assert out.returncode == 2 and error in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_permutation_test_is_exact_on_small_samples() -> None:
    assert permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(2 / 20)
    assert permutation_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert permutation_p([1.0], [2.0, 3.0]) is None
    assert permutation_p([float(i) for i in range(12)], [i + 20.0 for i in range(12)]) < 0.001  # sampled


def _row(i: int, kind: str, start: float, end: float, metric: float | None, *, agent: str = "a",
         slot: str = "cpu0", verdict: str = "ok") -> dict[str, object]:
    def at(s: float) -> str:
        return f"2026-11-30T10:{int(s // 60):02d}:{s % 60:09.6f}Z"

    return {"id": i, "exp": f"e{i}", "kind": kind, "agent": agent, "queued": at(start), "started": at(start),
            "finished": at(end), "wall_s": end - start, "metric": metric, "standard": 1, "slot": slot,
            "verdict": verdict}


def test_figures_come_from_the_rows() -> None:
    from autoorg.clock import parse_iso

    task = load_task(SYNTHETIC / "task.yaml")
    rows = [_row(1, "baseline", 0, 10, 3.0), _row(2, "baseline", 0, 10, 3.2, slot="gpu0+1"),
            _row(3, "exp", 10, 20, 2.9), _row(4, "exp", 20, 30, 3.1), _row(5, "exp", 30, 40, 2.7),
            _row(6, "verify", 40, 50, 2.8), _row(7, "exp", 50, 60, None, verdict="crash: x")]
    promotions = [{"exp": "e3", "agent": "a", "metric": 2.85, "head_mean": 3.1, "delta": -0.25, "new_head": "c",
                   "description": "d", "ts": "2026-11-30T10:00:50.000000Z"}]
    began, ended = parse_iso("2026-11-30T10:00:00.000000Z"), parse_iso("2026-11-30T10:01:00.000000Z")
    fig = figures.org_figures(task, rows, promotions, [], [{"mean": 3.1}], {}, began=began, ended=ended,
                              reference=2.1)
    assert fig["start"] == 3.1 and fig["best"] == 2.85 and fig["improvement"] == pytest.approx(0.25)
    assert fig["gap_closed"] == pytest.approx(0.25)
    assert fig["compute_h"] == pytest.approx(80 / 3600)  # e2 held two GPUs: 20 of the 80 slot-seconds
    assert fig["verification_share"] == pytest.approx(40 / 80)
    assert fig["first_promotion_minutes"] == pytest.approx(50 / 60)
    assert fig["first_promotion_compute_h"] == pytest.approx(70 / 3600)  # runs finished by the promotion
    assert (fig["experiments"], fig["crashes"], fig["promotions"]) == (4, 1, 1)
    assert fig["kept"] == 1 and fig["kept_confirmed"] == 0  # e5 beat a's best single run e3; e3 is its first
    assert fig["best_single_run"] == 2.7
    assert [p["metric"] for p in fig["curve"]] == [3.1, 2.85]
    [s] = summarise([{"org": "x", "task": "t", "figures": fig}, {"org": "x", "task": "t", "figures": fig}])
    assert s.figures["improvement"].mean == pytest.approx(0.25) and s.figures["improvement"].sd == 0


@pytest.fixture
def bench_repo(repo: Path, tmp_path: Path) -> Path:
    add_synthetic(repo, budget=0.2, grace=30)  # a busy machine must not void the runs
    (repo / "examples" / "synthetic" / "reference.yaml").write_text("metric: 2.2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reference")
    (repo / "solo.yaml").write_text(yaml.safe_dump({"agents": [{"name": "ann", "slots": "cpu"}]}))
    (repo / "bench.yaml").write_text("name: t\ntasks: [synthetic]\nrepeats: 1\nbudget: {slot_minutes: 0.4}\n"
                                     "cores: 1\nparallel: 2\nbackend: heuristic\nbaselines: [random]\n"
                                     "processes: {baseline: {repeats: 2}, gate: {repeats: 2}}\n"
                                     "orgs:\n  - {name: solo, org: solo.yaml}\n")
    return repo


def test_a_bench_runs_orgs_to_their_compute_and_reports_and_resumes(bench_repo: Path) -> None:
    out = bench_repo / "out"
    first = run_cli("bench", "bench.yaml", "--out", str(out), cwd=bench_repo, timeout=240)
    assert first.returncode == 0, first.stderr
    assert "| solo | 1 |" in first.stdout and "random (random search)" in first.stdout
    for org in ("solo", "random"):
        result = json.loads((cell_dir(out, org, "synthetic", 1) / "result.json").read_text())
        fig = result["figures"]
        # stopped once its runs had used the budget (a run cancelled at the stop counts its own wall time, a
        # little under what the live count gave it)
        assert fig["compute_h"] * 3600 >= 0.9 * 0.4 * 60 and fig["start"] is not None and fig["reference"] == 2.2
        snap = cell_dir(out, org, "synthetic", 1) / "repo"
        assert git(snap, "rev-list", "--count", "main") == "1"  # no history an agent could read
        assert not (snap / "examples" / "synthetic" / "reference.yaml").exists()
        assert "2.2" not in git(snap, "log", "-p", "--all")
        state = json.loads((snap / ".autoorg" / "bench" / "state.json").read_text())
        assert state["status"] == "stopped"
        # the org runs the snapshot's task, never the source repo's (the bench runs from that repo's root)
        assert Path(state["task"]).is_relative_to(snap.resolve()), state["task"]
        assert yaml.safe_load((snap.parent / "org.yaml").read_text())["processes"]["gate"]["baselines"] == 2
    doc = json.loads((out / "report.json").read_text())
    assert [o["org"] for o in doc["orgs"]] == ["solo", "random"] and len(doc["comparisons"]) == 1
    assert (out / "report.html").read_text().count("<tr>") == 3 and list(out.glob("progress-*.png"))
    stamp = (cell_dir(out, "solo", "synthetic", 1) / "result.json").stat().st_mtime_ns
    again = run_cli("bench", "bench.yaml", "--out", str(out), cwd=bench_repo, timeout=60)
    assert again.returncode == 0 and "resuming: 2 of 2 cells already done" in again.stderr
    assert (cell_dir(out, "solo", "synthetic", 1) / "result.json").stat().st_mtime_ns == stamp
    report_only = run_cli("bench", "bench.yaml", "--out", str(out), "--report-only", "--json", cwd=bench_repo)
    assert json.loads(report_only.stdout)["cells"] == 2


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_a_kill_stops_every_org_and_the_same_command_resumes(bench_repo: Path, stop: int) -> None:
    suite = bench_repo / "bench.yaml"
    suite.write_text(suite.read_text().replace("slot_minutes: 0.4", "slot_minutes: 5"))
    out = bench_repo / "out"
    proc = subprocess.Popen([sys.executable, "-m", "autoorg", "bench", str(suite), "--out", str(out)],
                            cwd=bench_repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        retry_until(lambda: all((cell_dir(out, o, "synthetic", 1) / "progress.json").exists()
                                for o in ("solo", "random")), timeout=120, message="both cells running")
        time.sleep(1)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted: 0 of 2 cells done; the same command resumes" in err
    for org in ("solo", "random"):
        folder = cell_dir(out, org, "synthetic", 1)
        assert not (folder / "result.json").exists()
        state = json.loads((folder / "repo" / ".autoorg" / "bench" / "state.json").read_text())
        assert state["status"] == "stopped"
    leftover = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert leftover == []
