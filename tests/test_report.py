"""`autoorg report`: the figures of a real org's ledger, its Markdown/HTML/PNG pages, `--json`, and bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from autoorg.clock import parse_iso
from autoorg.experiments import ledger
from autoorg.org import build_org, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.report import one_sided_p
from autoorg.state import read_state
from autoorg.testing import run_cli

HEAD, CAND = "2" * 40, "4" * 40


def stamp(paths: OrgPaths, minutes: float) -> str:
    moment = parse_iso(read_state(paths).created) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def add_run(paths: OrgPaths, kind: str, agent: str, minutes: float, *, commit: str = CAND, seed: int = 1,
            **fields: Any) -> str:
    exp = ledger.add_experiment(paths, {
        "kind": kind, "agent": agent, "task": "tiny", "commit_sha": commit, "tree": commit, "head": HEAD,
        "description": fields.pop("description", kind), "seed": seed, "budget": 10.0, "standard": 1,
        "slot_class": "cpu"})
    ledger.update_experiment(paths, exp, wall_s=60.0, finished=stamp(paths, minutes), **fields)
    return exp


@pytest.fixture
def story(repo: Path) -> OrgPaths:
    """A stopped org whose ledger tells a whole story: baselines, a promoted win verified in two same-seed pairs,
    a crash, a voided run, a discarded one, and model spend. Stopped first, so no daemon adds runs meanwhile."""
    plan = plan_org("2xcpu", task="tiny", backend="command", command="sleep 600", runtime="headless")
    build_org(plan)
    paths = plan.paths
    teardown_org(paths)
    add_run(paths, "baseline", "gate", 1, commit=HEAD, verdict="ok", metric=1.0, seed=11)
    add_run(paths, "baseline", "gate", 2, commit=HEAD, verdict="ok", metric=1.02, seed=12)
    win = add_run(paths, "exp", "alice", 3, verdict="verifying", metric=0.8, delta=-0.21, description="lower X")
    reruns = [add_run(paths, "verify", "gate", 4, commit=HEAD, seed=1, verdict="ok", metric=1.0),
              add_run(paths, "verify", "gate", 4, seed=1, verdict="ok", metric=0.8),
              add_run(paths, "verify", "gate", 5, commit=HEAD, seed=2, verdict="ok", metric=1.01),
              add_run(paths, "verify", "gate", 5, seed=2, verdict="ok", metric=0.82)]
    ledger.update_experiment(paths, win, verdict="promoted")
    ledger.add_verification(paths, exp=win, head=HEAD, commit_sha=CAND, runs=reruns, status="promoted")
    ledger.add_promotion(paths, exp=win, agent="alice", old_head=HEAD, new_head=CAND, metric=0.81, head_mean=1.005,
                         delta=-0.195, band=0.05, description="lower X", ts=stamp(paths, 6), heldout_delta=-0.1,
                         heldout_worse=0)
    add_run(paths, "exp", "bob", 7, verdict="crash: exit 1", description="divide by zero")
    add_run(paths, "exp", "bob", 8, verdict="void: rewrote protected file tiny/eval.py")
    add_run(paths, "exp", "bob", 9, verdict="discarded", metric=1.1, delta=0.1)
    ledger.record_usage(paths, "alice", [{"session": "claude:1", "backend": "claude", "model": "claude-sonnet-4-5",
                                          "input_tokens": 1000, "cached_input_tokens": 2000,
                                          "cache_write_tokens": 0, "output_tokens": 500, "requests": 3,
                                          "cost_usd": 0.25}])
    return paths


def test_report_figures_and_pages(story: OrgPaths) -> None:
    result = run_cli("report", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert f["best_metric"] == 0.81 and f["start_metric"] == 1.005 and f["improvement"] == pytest.approx(0.195)
    assert (f["promotions"], f["experiments"], f["crashes"], f["refusals"]) == (1, 4, 1, 1)
    assert f["compute_h"] == pytest.approx(10 * 60 / 3600)  # ten runs of 60 s
    assert f["verify_share"] == pytest.approx(0.4) and f["baseline_share"] == pytest.approx(0.2)
    assert f["hours_to_first_promotion"] == pytest.approx(0.1)
    assert f["compute_h_to_first_promotion"] == pytest.approx(7 * 60 / 3600)  # the runs finished by minute 6
    assert f["improvement_per_compute_h"] == pytest.approx(0.195 / (600 / 3600))
    assert (f["tokens"], f["cost_usd"]) == (3500, 0.25)
    (promotion,) = f["lineage"]
    assert (promotion["commit"], promotion["author"], promotion["pairs"]) == (CAND[:10], "alice", 2)
    assert promotion["p"] == pytest.approx(one_sided_p([0.2, 0.19])) and promotion["p"] < 0.05
    assert [s["metric"] for s in f["steps"]] == [1.005, 0.81]
    assert len(f["points"]) == 10

    out = story.repo / "out"
    result = run_cli("report", "--out", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "best verified loss" in result.stdout and str(out / "report.md") in result.stdout
    md = (out / "report.md").read_text()
    assert f"| {CAND[:10]} | alice | lower X | 0.8100 | -0.1950 | 0.00816 / 2 | -0.1000 |" in md
    page = (out / "report.html").read_text()
    assert "<img src='progress.png'" in page and "<img src='best_vs_compute.png'" in page
    for png in ("progress.png", "best_vs_compute.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (story.home / "report").exists()  # --out wrote only there


def test_one_sided_p() -> None:
    assert one_sided_p([0.1]) is None
    assert one_sided_p([0.1, 0.1]) == 0.0 and one_sided_p([-0.1, -0.1]) == 1.0
    assert one_sided_p([1.0, -1.0]) == pytest.approx(0.5)
    assert one_sided_p([0.3, 0.2, 0.25, 0.28]) < one_sided_p([0.3, -0.2, 0.25, 0.28])  # type: ignore[operator]


def test_report_bad_input_is_one_line(repo: Path) -> None:
    result = run_cli("report")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no org" in result.stderr
    result = run_cli("report", "--tag", "nope")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no org with tag 'nope'" in result.stderr
