"""Processes as org code: stop rules (validated with file:line, every problem at once; fired by the daemon from the
ledger on a real headless org: `stop` refuses the next submission, `pause` holds the agents), and hot reload (an
edited prompt reaches a running agent's inbox as a `system` message with the diff; new rows carry the new hash)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoorg import comms, orgcode
from autoorg.agents import homes
from autoorg.dash.data import take_snapshot
from autoorg.errors import SpecError
from autoorg.experiments import ledger, stop_rules
from autoorg.org import build_org, org_status, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.spec import StopRule, load_org
from autoorg.testing import retry_until, run_cli


def headless(repo: Path, tmp_path: Path, processes: dict[str, Any]) -> OrgPaths:
    spec = {"tag": "pr", "task": "tiny", "defaults": {"backend": "command", "command": "sleep 3600"},
            "agents": [{"name": "alice", "slots": "cpu"}, {"name": "bob", "slots": "cpu"}],
            "processes": {"baseline": {"repeats": 2}, **processes}}
    org_file = tmp_path / "pr.yaml"
    org_file.write_text(yaml.safe_dump(spec))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    build_org(plan)
    return plan.paths


def submit(paths: OrgPaths, agent: str, x: float) -> Any:
    """`autoorg exp submit` from the agent's worktree with the tiny task's knob X set (bigger is worse)."""
    train = paths.worktree(agent) / "tiny" / "train.py"
    train.write_text(train.read_text().replace("X = ", f"X = {x}  # was ", 1))
    return run_cli("exp", "submit", "-m", f"X = {x}", cwd=paths.worktree(agent),
                   env={"AUTOORG_HOME": str(paths.home), "AUTOORG_AGENT": agent})


def system_messages(paths: OrgPaths, agent: str) -> list[comms.Message]:
    return [m for m in comms.read_inbox(paths, agent, include_read=True) if m.kind == "system"]


# ---------------------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("rule, fragment", [
    ("{max_experiments: 0}", "processes.stop[0].max_experiments must be a whole number >= 1, got 0"),
    ("{max_tokens: 1.5}", "processes.stop[0].max_tokens must be a whole number >= 1"),
    ("{max_cost_usd: -2}", "processes.stop[0].max_cost_usd must be a number of dollars > 0"),
    ("{crash_rate: 1.5}", "processes.stop[0].crash_rate must be a fraction >= 0 and < 1"),
    ("{crash_rate: 0.5, window: 0}", "processes.stop[0].window must be a whole number >= 1, got 0"),
    ("{plateau: 5, window: 3}", "processes.stop[0].window applies to crash_rate only"),
    ("{plateau: 5, per: agent}", "a plateau counts the org's promotions"),
    ("{plateau: 5, per: team}", "processes.stop[0].per must be org or agent"),
    ("{plateau: 5, action: pasue}", "action must be stop or pause, got 'pasue'; did you mean 'pause'?"),
    ("{platue: 5}", "unknown key 'platue' in processes.stop[0]; did you mean 'plateau'?"),
    ("{max_tokens: 10, max_cost_usd: 1}", "needs exactly one of max_experiments"),
])
def test_each_stop_rule_error_names_file_and_line(tmp_path: Path, rule: str, fragment: str) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(f"agents: [alice]\nprocesses:\n  stop:\n    - {{plateau: 3}}\n    - {rule}\n")
    with pytest.raises(SpecError) as err:
        load_org(str(path))
    assert str(err.value).startswith(f"{path}:5: ") and fragment.replace("[0]", "[1]") in str(err.value)


def test_every_problem_is_reported_one_line_each_and_up_exits_2(repo: Path, tmp_path: Path) -> None:
    org = tmp_path / "bad.yaml"
    org.write_text("agents: [alice]\nprocesses:\n  gate: {repeats: 0, zz: 1}\n  restart: {exited: maybe}\n"
                   "  stop:\n    - {plateau: 5, action: halt}\n    - nonsense\n  stop_rules: []\n")
    proc = run_cli("up", str(org), "--task", "tiny", "--headless", "--dry-run", cwd=repo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.removeprefix("autoorg: ").splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{org}:{n}" for n in (3, 3, 4, 5, 6, 8)], lines
    assert "unknown key 'zz' in processes.gate; did you mean 'z'?" in lines[0]
    assert "processes.gate.repeats must be a whole number >= 1" in lines[1]
    assert "processes.restart.exited must be true or false" in lines[2]
    assert "processes.stop[1] must be a mapping" in lines[3]  # a list item has no line of its own: the list's
    assert "processes.stop[0].action must be stop or pause" in lines[4]
    assert "unknown key 'stop_rules' in processes; did you mean 'stop'?" in lines[5]
    assert not (repo / ".autoorg" / "bad").exists()


def test_stop_rules_and_gate_settings_round_trip_and_old_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("agents: [alice]\nprocesses:\n  baseline: {repeats: 3}\n  restart: {exited: true}\n  stop:\n"
                    "    - {max_experiments: 4, per: agent}\n    - {crash_rate: 0.5, window: 6, action: pause}\n"
                    "    - {max_cost_usd: 2.5}\n")
    spec = load_org(str(path))
    assert spec.processes.baseline.repeats == 3 and spec.processes.restart.exited
    assert spec.processes.stop == (StopRule("max_experiments", 4.0, per="agent"),
                                   StopRule("crash_rate", 0.5, action="pause", window=6),
                                   StopRule("max_cost_usd", 2.5))
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(spec.to_yaml())
    assert "baselines: 3" in resolved.read_text()  # written under gate now
    assert load_org(str(resolved)).processes == spec.processes
    path.write_text("agents: [alice]\nprocesses:\n  gate: {baselines: 4}\n  baseline: {repeats: 5}\n")
    with pytest.raises(SpecError, match=r":3: processes.gate.baselines \(4\) and processes.baseline.repeats \(5\)"):
        load_org(str(path))


# ---------------------------------------------------------------------------------------------------------------
# Stop rules on a running org


def test_plateau_pauses_agents_and_max_experiments_refuses_the_next_submission(repo: Path, tmp_path: Path) -> None:
    paths = headless(repo, tmp_path, {"stop": [{"plateau": 2, "action": "pause"}, {"max_experiments": 3}]})
    try:
        first, second = submit(paths, "alice", 5.0), submit(paths, "bob", 6.0)  # both worse: no promotion
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        retry_until(lambda: all((comms.read_status(paths, a) or {}).get("state") == "paused" for a in ("alice", "bob")),
                    timeout=90, message="the plateau rule pausing both agents")
        assert "paused by stop rule plateau 2" in comms.read_status(paths, "alice")["detail"]  # type: ignore[index]
        assert any("plateau 2/2" in m.body for m in system_messages(paths, "bob"))
        status = org_status(paths)
        plateau = next(r for r in status["rules"] if r["rule"] == "plateau 2")
        assert plateau["fired"] and plateau["progress"] == "plateau 2/2"
        assert "plateau 2/2 -> fired" in take_snapshot(paths).stop_rules  # the dashboard's summary line
        assert next(r for r in status["rules"] if r["rule"] == "max_experiments 3")["progress"] == \
            "max_experiments 2/3"

        assert submit(paths, "alice", 7.0).returncode == 0  # the third is still accepted: a pause holds no CLI
        refused = submit(paths, "bob", 8.0)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "refused: the org stopped queuing experiments" in refused.stderr
        assert "max_experiments 3/3" in refused.stderr and "nothing was committed" in refused.stderr
        assert len(ledger.experiments(paths, kinds=("exp",))) == 3
        retry_until(lambda: any(f.rule == "max_experiments 3" for f in stop_rules.fired(paths)), timeout=30,
                    message="the daemon recording the max_experiments rule")
        board = run_cli("board", env={"AUTOORG_HOME": str(paths.home)}).stdout
        assert "## Stop rules" in board and "**max_experiments 3** (max_experiments 3/3): stopped queuing" in board
        assert any("accepts no new experiment" in m.body for m in system_messages(paths, "alice"))
        text = run_cli("status", env={"AUTOORG_HOME": str(paths.home)}).stdout
        assert "stop rule fired" in text and "max_experiments 3/3 -> stopped queuing" in text
    finally:
        teardown_org(paths)


# ---------------------------------------------------------------------------------------------------------------
# Hot reload


def test_an_edited_prompt_reaches_a_running_agent_and_new_rows_carry_the_new_hash(repo: Path, tmp_path: Path,
                                                                                  ) -> None:
    paths = headless(repo, tmp_path, {})
    try:
        before = orgcode.given(paths.orgcode)
        assert before and submit(paths, "alice", 2.0).returncode == 0
        # alice's home as Claude Code's and Codex's prepare() leave it (these agents run `command`)
        home = homes.agent_home(paths, "alice")
        for folder in ("claude/skills", "codex/skills"):
            (home / folder).mkdir(parents=True)
        (home / "role.md").write_text("old role")
        (home / "codex" / "AGENTS.md").write_text("old role")
        edited = tmp_path / "edited-org"  # made aside, then renamed into place: the daemon sees one edit
        (edited / "prompts").mkdir(parents=True)
        (edited / "skills" / "plot-curves").mkdir(parents=True)
        (edited / "skills" / "plot-curves" / "SKILL.md").write_text("---\nname: plot-curves\n---\nPlot.\n")
        (edited / "prompts" / "researcher.md").write_text(
            (orgcode.bundled_root() / "prompts" / "researcher.md").read_text()
            + "Ablate every multi-part win before you claim it.\n")
        edited.rename(repo / "org")
        told = retry_until(lambda: system_messages(paths, "bob"), timeout=60, message="the reload message")
        body = told[0].body
        assert "+Ablate every multi-part win before you claim it." in body and "prompts/researcher.md" in body
        # the reload tells every agent, then notes the new version in the history: wait for that note
        after = retry_until(lambda: (h := orgcode.given(paths.orgcode)) != before and h, timeout=30,
                            message="the reload noted in the history")
        assert f"{before} -> {after}" in body
        assert [m.body for m in system_messages(paths, "alice")] == [body]
        assert "+++ " + after + "/skills/plot-curves/SKILL.md" in body
        for folder in ("claude", "codex"):
            assert (home / folder / "skills" / "plot-curves" / "SKILL.md").read_text().endswith("Plot.\n")
            assert (home / folder / "skills" / "run-experiment" / "SKILL.md").is_file()
        for role in (home / "role.md", home / "codex" / "AGENTS.md"):
            assert "Ablate every multi-part win before you claim it." in role.read_text()
            assert "You are alice, a researcher in the autoorg org \"pr\"" in role.read_text()
        assert submit(paths, "bob", 3.0).returncode == 0
        rows = ledger.experiments(paths, kinds=("exp",))
        assert [(r["agent"], r["org_code"]) for r in rows] == [("alice", before), ("bob", after)]
        shown = json.loads(run_cli("org", "show", "--json", cwd=repo).stdout)
        assert shown["hash"] == after and [h["hash"] for h in shown["history"]] == [before, after]
        assert [h["why"] for h in shown["history"]] == ["up", "edited"]
        again = run_cli("org", "reload", cwd=repo)
        assert again.returncode == 0 and "nothing to reload" in again.stdout
        assert len(system_messages(paths, "alice")) == 1
    finally:
        teardown_org(paths)


def test_restart_exited_restarts_an_agent_that_exited_cleanly(repo: Path, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    spec = {"tag": "rx", "task": "tiny", "agents": [{"name": "alice", "slots": "cpu", "backend": "command",
                                                     "command": f"echo start >> {starts}; exit 0"}],
            "processes": {"baseline": {"repeats": 2}, "restart": {"limit": 2, "backoff": "0.1s", "exited": True}}}
    org_file = tmp_path / "rx.yaml"
    org_file.write_text(yaml.safe_dump(spec))
    plan = plan_org(str(org_file), repo=repo, runtime="headless")
    build_org(plan)
    try:
        retry_until(lambda: starts.is_file() and len(starts.read_text().splitlines()) == 3, timeout=60,
                    message="two restarts of an agent that exits with status 0")
        detail = retry_until(lambda: "gave up after 2 restarts" in (comms.read_status(plan.paths, "alice") or {})
                             .get("detail", ""), timeout=30, message="the restarts given up")
        assert detail
    finally:
        teardown_org(plan.paths)
