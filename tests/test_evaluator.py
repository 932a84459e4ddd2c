"""The metric comes from the protected evaluator in its own process (issue 12, items 3, 6, 7), on real processes:
whatever train.py prints, monkeypatches or rewrites, the ledger holds evaluate.py's number from the program head's
copy; a bad final value is a crash that says why; promotions are scored on the held-out split."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from autoorg import comms, experiments, gate
from autoorg.errors import SpecError
from autoorg.experiments import ledger
from autoorg.experiments.measure import WRITTEN_MAX, metric_value, written_value
from autoorg.experiments.process import run_command
from autoorg.experiments.run import execute
from autoorg.experiments.sandbox import NAMESPACES, seal_mode
from autoorg.paths import OrgPaths
from autoorg.spec import load_task
from autoorg.testing import git, run_cli
from autoorg.testing.experiments import TRAIN, drive_gate, set_knobs, settled, start_org, verdict
from tests.exp_support import SYNTHETIC, TRIES_THE_ORG, add_synthetic

BUDGET = 0.3
SIGMA = 0.005
HEAD = {"LEARNING_RATE": 0.001, "WARMUP_FRAC": 0.3, "WEIGHT_DECAY": 0.0, "DEPTH": 4, "BATCH_SIZE": 64}
LANDSCAPE = "examples/synthetic/landscape.py"


def landscape() -> Any:
    spec = importlib.util.spec_from_file_location("landscape_for_tests", SYNTHETIC / "landscape.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def honest(seed: int, knobs: dict[str, float] = HEAD) -> float:
    """val_loss of a recipe at the test budget, computed here from the landscape (not by any run)."""
    land = landscape()
    tokens = land.steps_in(0.9 * BUDGET, knobs["DEPTH"]) * knobs["BATCH_SIZE"] * land.SEQ_LEN
    return round(land.noisy_loss(knobs, tokens, seed, SIGMA), 6)


def run_exp(paths: OrgPaths, agent: str, message: str, seed: int = 11) -> dict[str, Any]:
    ctx = experiments.load_context(paths)
    exp = experiments.queue_experiment(ctx, agent, message, seed=seed)
    return gate.run_experiment(ctx, exp)


def edit_train(paths: OrgPaths, agent: str, old: str, new: str) -> None:
    train = paths.worktree(agent) / TRAIN
    text = train.read_text()
    assert old in text
    train.write_text(text.replace(old, new, 1))


@pytest.fixture
def org(repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA)
    return start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)


# ---------------------------------------------------------------------------------------------------------------
# The metric is the protected evaluator's


def test_an_honest_run_is_measured_by_the_evaluator_and_training_lines_stay_progress(org: OrgPaths) -> None:
    row = run_exp(org, "alice", "as is")
    assert row["verdict"] in ("pending", "same as head") and row["metric"] == honest(11)
    assert row["metrics"]["val_loss"] == honest(11) and "wall_train_s" not in row["metrics"]  # evaluator's only
    assert row["train_s"] == pytest.approx(0.9 * BUDGET)
    run = org.runs / row["exp"]
    progress = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train_loss" in m for m in progress)  # training's lines: the dashboard's progress
    assert "evaluation by the protected evaluator" in (run / "log").read_text()
    assert not (run / "out").exists() and not (run / "evaluator").exists()
    assert row["heldout"] is None  # an agent's run is never scored on the held-out split


@pytest.mark.parametrize("cheat", ["second-final", "monkeypatch", "rewrite-protected", "over-train", "bad-values"])
def test_what_train_py_prints_or_patches_does_not_change_the_metric(org: OrgPaths, cheat: str) -> None:
    if cheat == "second-final":
        edit_train(org, "alice", "      flush=True)\n", "      flush=True)\nprint('@metric ' + json.dumps("
                   "{'final': True, 'val_loss': 0.1, 'train_s': 0.1}), flush=True)\n")
    elif cheat == "monkeypatch":
        edit_train(org, "alice", "sigma = landscape.sigma()\n", "sigma = landscape.sigma()\n"
                   "_true = landscape.noisy_loss\nlandscape.noisy_loss = lambda *a: _true(*a) - 0.5\n")
    elif cheat == "rewrite-protected":  # its own exported copy of the evaluator and the landscape
        edit_train(org, "alice", "import landscape  # noqa: E402\n", "import landscape  # noqa: E402\n"
                   "for _name in ('landscape.py', 'evaluate.py'):\n"
                   "    _f = Path(__file__).with_name(_name)\n"
                   "    _f.write_text(_f.read_text().replace('    loss = 1.0\\n', '    loss = 0.2\\n')"
                   ".replace('round(val_loss, 6)', 'round(val_loss - 0.5, 6)'))\n")
    elif cheat == "over-train":  # trains 2.7x the budget and says it did not
        edit_train(org, "alice", "train_seconds = 0.9 * args.budget", "train_seconds = 2.7 * 0.9 * args.budget")
        edit_train(org, "alice", '"train_s": round(train_seconds, 3)', '"train_s": round(train_seconds / 2.7, 3)')
    else:
        edit_train(org, "alice", "      flush=True)\n", "      flush=True)\n"
                   "for _v in ('\"0.5\"', 'true', 'NaN', '1e-999', '-1'):\n"
                   "    print('@metric {\"val_loss\": ' + _v + '}', flush=True)\n")
    row = run_exp(org, "alice", cheat)
    if cheat == "rewrite-protected":  # the harness re-hashes the run's copy of the protected files: void, no number
        assert row["verdict"].startswith("void: rewrote protected file") and row["metric"] is None, row["verdict"]
        return
    assert row["metric"] == honest(11), row["verdict"]
    assert not row["verdict"].startswith("crash")


@pytest.mark.parametrize(("printed", "why"), [
    ('@metric {"final": true, "val_loss": 1.1}\n@metric {"final": true, "val_loss": 0.6}',
     "more than one final line"),
    ('@metric {"final": true, "val_loss": "0.5"}', "val_loss is not a number ('0.5')"),
    ('@metric {"final": true, "val_loss": true}', "val_loss is not a number (True)"),
    ('@metric {"final": true, "val_loss": NaN}', "val_loss is nan"),
    ('@metric {"final": true, "val_loss": Infinity}', "val_loss is inf"),
    ('@metric {"final": true, "val_loss": 1e-999}', "val_loss 1e-999 does not fit a float"),
    ('@metric {"final": true, "val_loss": 1e999}', "val_loss 1e999 does not fit a float"),
    ('@metric {"final": true, "val_loss": -1.0}', "val_loss -1 is outside the task's range [0, 10]"),
    ("val_loss: nan", "val_loss is nan"),
    ('@metric {"final": true, "val_loss": 1.25}', None),
])
def test_a_final_value_must_be_one_sane_json_number(tmp_path: Path, printed: str, why: str | None) -> None:
    """What a process really printed, parsed as the runner parses it, judged by the sanity rules."""
    task = load_task(SYNTHETIC / "task.yaml")
    script = tmp_path / "print.py"
    script.write_text(f"print({printed!r})\n")
    out = run_command(f"{sys.executable} {script}", cwd=tmp_path, env={}, limit_s=30, log_path=tmp_path / "log",
                      metrics_path=tmp_path / "metrics.jsonl")
    _, value, crash = metric_value(task, out)
    assert crash == why
    assert (value == 1.25) if why is None else value is None


def test_a_value_written_to_a_file_is_read_under_the_same_rules_and_only_from_a_small_file(tmp_path: Path) -> None:
    task = load_task(SYNTHETIC / "task.yaml")
    file = tmp_path / "heldout.log"
    assert written_value(task, file) is None  # nothing written
    file.write_text('evaluating\n@metric {"final": true, "val_loss": 1.25}\n')
    assert written_value(task, file) == 1.25
    file.write_text('@metric {"final": true, "val_loss": 1.25}\n@metric {"final": true, "val_loss": 1.0}\n')
    assert written_value(task, file) is None  # two final lines
    file.write_text('@metric {"final": true, "val_loss": -1.0}\n')
    assert written_value(task, file) is None  # outside the task's range
    file.write_text("x" * WRITTEN_MAX + '\n@metric {"final": true, "val_loss": 1.25}\n')
    assert written_value(task, file) is None  # filled: not read


def test_without_an_evaluator_training_is_measured_and_a_second_final_line_crashes(
        repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA, evaluator=False)
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    assert run_exp(paths, "alice", "as is")["metric"] == honest(11)  # today's behaviour: unprotected
    edit_train(paths, "alice", "      flush=True)\n", "      flush=True)\nprint('@metric ' + json.dumps("
               "{'final': True, 'val_loss': 0.1}), flush=True)\n")
    row = run_exp(paths, "alice", "second final line")
    assert row["verdict"] == "crash: more than one final line" and row["metric"] is None
    (paths.worktree("alice") / TRAIN).write_text((SYNTHETIC / "train.py").read_text())
    edit_train(paths, "alice", '"val_loss": round(val_loss, 6)', '"val_loss": -1.0')
    row = run_exp(paths, "alice", "negative")
    assert row["verdict"] == "crash: val_loss -1 is outside the task's range [0, 10]"


def test_a_broken_recipe_is_a_crash_that_says_why(org: OrgPaths) -> None:
    edit_train(org, "alice", '(args.out / "recipe.json").write_text(json.dumps(knobs) + "\\n")',
               '(args.out / "recipe.json").write_text(json.dumps({**knobs, "DEPTH": "deep"}))')
    row = run_exp(org, "alice", "a string depth")
    assert row["verdict"].startswith("crash: evaluation failed (exit 1): evaluate.py: error: knob DEPTH")


# ---------------------------------------------------------------------------------------------------------------
# The held-out check


def evaluate_together(repo: Path) -> None:
    """The synthetic task's `evaluate:` scoring the held-out split too, in the same process ({heldout_out})."""
    task = repo / "examples/synthetic/task.yaml"
    text = task.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("evaluate:"))
    task.write_text(text.replace(line, line[:-1] + ' --heldout-to {heldout_out}"'))
    git(repo, "commit", "-qam", "val and held-out in one evaluator process")


@pytest.fixture(params=["two processes", "one process"])
def scored_org(request: pytest.FixtureRequest, repo: Path, tmux_socket: str, tmp_path: Path) -> OrgPaths:
    """An org whose gate runs are scored on the held-out split by the `heldout:` command, or by `evaluate:`
    itself."""
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA)
    if request.param == "one process":
        evaluate_together(repo)
    return start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)


def test_a_promotion_is_scored_on_the_held_out_split(scored_org: OrgPaths) -> None:
    org = scored_org
    drive_gate(org, lambda: gate.head_stats(experiments.load_context(org), experiments.load_context(org)
                                            .program_head(), "cpu").n >= 2, message="the baseline")
    set_knobs(org.worktree("alice"), LEARNING_RATE=0.006)
    exp = run_exp(org, "alice", "lr 0.006")["exp"]
    drive_gate(org, lambda: settled(org, exp), timeout=120, message="the win to be decided")
    assert verdict(org, exp) == "promoted"
    (promo,) = ledger.promotions(org)
    assert promo["heldout_delta"] < 0 and not promo["heldout_worse"]  # a real win carries over
    assert promo["heldout_mean"] == pytest.approx(promo["heldout_head_mean"] + promo["heldout_delta"])
    gate_runs = ledger.experiments(org, kinds=("baseline", "verify"))
    assert gate_runs and all(r["heldout"] is not None for r in gate_runs if r["verdict"] == "ok")
    assert all(r["heldout"] is None for r in ledger.experiments(org, kinds=("exp",)))
    together = "{heldout_out}" in experiments.load_context(org).task.evaluate
    for r in gate_runs:  # one evaluator process per run, or a second for the held-out split: logged apart
        run = org.runs / r["exp"]
        assert (run / "log").read_text().count("evaluation by the protected evaluator") == 1
        heldout_log = (run / "heldout.log").read_text()
        assert heldout_log.count("evaluation by the protected evaluator") == (not together)
        assert heldout_log.count("@metric") == 1
        assert f"{r['heldout']:g}" not in (run / "log").read_text()
    # a person sees val and held-out side by side; agents (the board, their messages, `results` from their
    # panes) never see a held-out number
    out = run_cli("results", cwd=org.repo, env={"AUTOORG_HOME": str(org.home)}).stdout
    assert "(val -0.0" in out and "held-out -0.0" in out
    as_agent = run_cli("results", "--json", cwd=org.repo, env={"AUTOORG_HOME": str(org.home), "AUTOORG_AGENT": "bob"})
    assert "heldout_delta" not in as_agent.stdout and "heldout_mean" not in as_agent.stdout
    assert "held-out" not in run_cli("results", cwd=org.repo,
                                     env={"AUTOORG_HOME": str(org.home), "AUTOORG_AGENT": "bob"}).stdout
    assert "held-out" not in comms.read_board(org)
    told = [m for m in comms.read_inbox(org, "alice", include_read=True) if m.exp == exp]
    assert told and all("held-out" not in m.body for m in told)
    assert not any(m.exp == exp for m in comms.read_inbox(org, "human"))  # nothing to flag


def test_a_held_out_line_left_by_training_is_not_the_gate_runs_score(
        repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    """The cheat on one-process scoring: the candidate's own train.py (a gate run runs it) writes the file its
    evaluator is to write the held-out line to, with a fine number. Here the evaluator names the file but writes
    nothing (as nanochat's does when its held-out split cannot be read): the planted line must not count."""
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA)
    task = repo / "examples/synthetic/task.yaml"
    text = task.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("evaluate:"))
    task.write_text(text.replace(line, line[:-1] + '; : {heldout_out}"'))
    git(repo, "commit", "-qam", "an evaluator that writes no held-out line")
    org = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    edit_train(org, "alice", "import landscape  # noqa: E402\n", "import landscape  # noqa: E402\nimport os\n"
               "(Path(os.environ['AUTOORG_OUT']).parent / 'heldout.log').write_text("
               "'@metric {\"final\": true, \"val_loss\": 0.01}\\n')\n")
    worktree = org.worktree("alice")
    git(worktree, "commit", "-qam", "plants a held-out line")
    ctx = experiments.load_context(org)
    exp = experiments.queue_run(ctx, kind="baseline", agent="gate", commit=git(worktree, "rev-parse", "HEAD"),
                                head=ctx.program_head(), description="a gate run of the planting code", seed=7,
                                budget=BUDGET, slot_class="cpu")
    row = execute(ctx, exp)
    assert row["verdict"] == "ok" and row["metric"] == honest(7)
    assert row["heldout"] is None


OVERFIT = """\
import json, sys
recipe = json.load(open(sys.argv[1]))
# the held-out split punishes exactly what helps on val
print("@metric " + json.dumps({"final": True, "val_loss": 1.0 + 50 * recipe["LEARNING_RATE"]}))
"""


def test_a_promotion_worse_on_the_held_out_split_is_flagged_to_human(
        repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA)
    task = repo / "examples/synthetic/task.yaml"
    (repo / "examples/synthetic/overfit.py").write_text(OVERFIT)
    text = task.read_text().replace("examples/synthetic/evaluate.py]", "examples/synthetic/evaluate.py, "
                                    "examples/synthetic/overfit.py]")
    lines = [ln if not ln.startswith("heldout:") else
             'heldout: "{python} {task_dir}/overfit.py {out}/recipe.json"' for ln in text.splitlines()]
    task.write_text("\n".join(lines) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "an overfitting held-out split")
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    drive_gate(paths, lambda: gate.head_stats(experiments.load_context(paths), experiments.load_context(paths)
                                              .program_head(), "cpu").n >= 2, message="the baseline")
    set_knobs(paths.worktree("alice"), LEARNING_RATE=0.006)
    exp = run_exp(paths, "alice", "lr 0.006")["exp"]
    drive_gate(paths, lambda: settled(paths, exp), timeout=120, message="the win to be decided")
    assert verdict(paths, exp) == "promoted"  # flagged, not undone
    (promo,) = ledger.promotions(paths)
    assert promo["heldout_worse"] == 1 and promo["heldout_delta"] == pytest.approx(50 * 0.005)
    flagged = [m for m in comms.read_inbox(paths, "human") if m.exp == exp]
    assert flagged and "worse on the held-out split" in flagged[0].body and "held-out val_loss" in flagged[0].body
    assert "held-out val_loss" not in comms.read_board(paths)  # the flag, not the numbers
    assert "held-out: worse — possible val overfitting" in comms.read_board(paths)


@pytest.mark.parametrize(("extra", "why"), [
    ("metric: {name: val_loss, range: [10, 0]}", "metric range must be [lo, hi] with lo < hi"),
    ("metric: {name: val_loss, range: [0, true]}", "metric range must be [lo, hi] with lo < hi"),
    ("metric: val_loss\nheldout: python h.py", "heldout needs evaluate"),
    ("metric: val_loss\nevaluate: [python, e.py]", "evaluate must be a command line"),
    ("metric: val_loss\nevaluate: python e.py --heldout-to {heldout_out}", "the task has no heldout command"),
])
def test_bad_evaluation_keys_are_spec_errors(tmp_path: Path, extra: str, why: str) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(f"name: t\neditable: [train.py]\nrun: python train.py\nbudget: 5\n{extra}\n")
    with pytest.raises(SpecError, match=re.escape(why)):
        load_task(task)


# An evaluator taken over by what it loads (a crafted checkpoint, stood in for by this script): it finds the org
# from its own folder (runs/<exp>/evaluator under the org's home) and tries what training may not.
TAKEN_OVER = """\
import json, sqlite3, sys
from pathlib import Path
home = Path.cwd().parents[1].parent
repo = Path(json.loads((home / "state.json").read_text())["repo"])
""" + TRIES_THE_ORG + """\
attempt("its own files", lambda: Path("examples/synthetic/evaluate.py").write_text("print('mine')"))
attempt("run folder", lambda: (Path.cwd().parent / "evaluated").write_text("x"))
print("@metric " + json.dumps({"final": True, "val_loss": 1.0, "wrote": wrote}))
"""


def test_the_evaluator_is_sealed_like_training(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    if seal_mode().mode != NAMESPACES:
        pytest.skip(f"no namespaces here: {seal_mode().why}")
    add_synthetic(repo, budget=BUDGET, sigma=SIGMA)
    task = repo / "examples/synthetic/task.yaml"
    (repo / "examples/synthetic/takeover.py").write_text(TAKEN_OVER)
    text = task.read_text().replace("examples/synthetic/evaluate.py]", "examples/synthetic/evaluate.py, "
                                    "examples/synthetic/takeover.py]")
    lines = [ln if not ln.startswith("evaluate:") else 'evaluate: "{python} {task_dir}/takeover.py"'
             for ln in text.splitlines() if not ln.startswith("heldout:")]
    task.write_text("\n".join(lines) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "an evaluator that gets taken over")
    paths = start_org(repo, tmux_socket, tmp_path, agents=1, baseline=2)
    state = paths.state_json.read_text()
    row = run_exp(paths, "alice", "honest")
    assert row["metric"] == 1.0 and row["metrics"]["wrote"] == ["run folder"], row
    assert paths.state_json.read_text() == state
    assert not (repo / ".git/refs/heads/planted").exists()
    assert all(r["metric"] != 0.0 for r in ledger.experiments(paths) if r["metric"] is not None)
