"""The comms commands as agents and people run them: the real `autoorg` entry point, one line and exit 2 on bad
input, nothing lost."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from autoorg import comms
from autoorg.cli import build_parser, command_module, main
from autoorg.paths import OrgPaths
from autoorg.spec import build_spec
from autoorg.testing import run_cli
from tests.hostile_files import HOSTILE, plant

ORG = {"tag": "t", "task": "tiny", "agents": [{"name": "chief", "role": "chief"}, "alice", "bob"]}


@pytest.fixture
def org(tmp_path: Path) -> OrgPaths:
    paths = OrgPaths(tmp_path / "repo" / ".autoorg" / "t")
    paths.home.mkdir(parents=True)
    paths.org_yaml.write_text(build_spec(ORG, source="test", backend="command", command="true").to_yaml())
    paths.state_json.write_text(json.dumps({"tag": "t", "status": "running", "agents": {}}))
    return paths


@pytest.fixture
def cli(org: OrgPaths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Callable[..., tuple[int, str, str]]:
    """Run `autoorg ARGS` in this process (the same `main` the entry point calls): (exit code, stdout, stderr)."""

    def run(*args: str, agent: str | None = None, stdin: str | None = None) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            m.setenv("AUTOORG_HOME", str(org.home))
            if agent:
                m.setenv("AUTOORG_AGENT", agent)
            m.setattr(sys, "stdin", io.StringIO(stdin or ""))
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse usage errors
                code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_send_inbox_and_read_marks(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("msg", "send", "bob", "lr", "0.02", "helps", agent="alice")[:2] == (0, "sent to bob\n")
    assert cli("msg", "send", "bob", "-", agent="chief", stdin="line one\nline two\n")[0] == 0
    code, out, _ = cli("inbox", agent="bob")
    assert code == 0
    assert "from alice to bob · note" in out and "lr 0.02 helps" in out and "line one\nline two" in out
    assert cli("inbox", agent="bob")[1] == "no unread messages for bob\n"
    code, out, _ = cli("inbox", "--all", "--json", agent="bob")
    shown = json.loads(out)
    assert [(m["from"], m["read"]) for m in shown] == [("alice", True), ("chief", True)]


def test_people_at_the_repo_root_are_human(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("msg", "send", "all", "stand", "by")[1] == "sent to chief, alice, bob\n"
    [msg] = comms.read_inbox(org, "alice")
    assert msg.sender == "human" and msg.to == "all"
    assert cli("msg", "send", "human", "need", "a", "GPU", agent="chief")[0] == 0
    assert "need a GPU" in cli("inbox")[1]


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("msg", "send", "zed", "hi"), None, "autoorg: unknown recipient 'zed' (agents: chief, alice, bob; "
                                        "roles: chief, researcher; or all, human)\n"),
    (("msg", "send", "../x", "hi"), None, "autoorg: bad recipient '../x': use a plain name like 'alice' "
                                          "(lowercase letters, digits, - or _)\n"),
    (("msg", "send", "a/b", "hi"), None, "autoorg: bad recipient 'a/b': use a plain name like 'alice' "
                                         "(lowercase letters, digits, - or _)\n"),
    (("msg", "send", "bob", "-"), "   \n", "autoorg: empty message: nothing to send\n"),
    (("msg", "send", "bob", "-"), "y" * 70000, "autoorg: message is 70000 bytes, over the 64 KiB cap; put the "
                                             "details in a file in your worktree and send its path\n"),
    (("take", "zed"), None, "autoorg: no agent 'zed' in org 't' (agents: chief, alice, bob)\n"),
    (("release", "../bob"), None, "autoorg: bad agent name '../bob': use a plain name like 'alice' "
                                  "(lowercase letters, digits, - or _)\n"),
    (("idea", "claim", "7"), None, "autoorg: no idea 7 in the queue (see `autoorg idea list`)\n"),
    (("idea", "done", "x1"), None, "autoorg: bad idea id 'x1': ideas are numbered (see `autoorg idea list`)\n"),
    (("standup", "did", "things"), None, "autoorg: standup notes are written by agents (AUTOORG_AGENT is not set "
                                        "in this shell)\n"),
    (("board", "post", "-"), "", "autoorg: empty post: nothing to put on the board\n"),
])
def test_bad_input_is_one_line_and_exit_2(org: OrgPaths, cli: Callable[..., tuple[int, str, str]],
                                          args: tuple[str, ...], stdin: str | None, message: str) -> None:
    code, out, err = cli(*args, stdin=stdin)
    assert (code, out, err) == (2, "", message)
    assert not (org.comms / "inbox").exists() or not list((org.comms / "inbox").rglob("*.md"))


def test_message_to_a_stopped_agent_is_kept(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    comms.write_status(org, "bob", "stopped", "exited with status 0")
    code, out, err = cli("msg", "send", "bob", "wake", "up", agent="alice")
    assert (code, out) == (0, "sent to bob\n")
    assert err == "autoorg: bob is stopped: the message is kept in its inbox and delivered when it runs again\n"
    assert [m.body for m in comms.read_inbox(org, "bob")] == ["wake up"]


def test_hook_status_take_and_release(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("hook", "status", "working", "--detail", "exp 4", agent="alice")[0] == 0
    status = comms.read_status(org, "alice")
    assert status and (status["state"], status["detail"]) == ("working", "exp 4")
    assert cli("take", "alice")[0] == 0
    assert cli("hook", "status", "idle", agent="alice")[0] == 0  # the hook fires while a person drives
    status = comms.read_status(org, "alice")
    assert status and (status["state"], status["reported"]) == ("human", "idle")
    code, out, _ = cli("release", "alice")
    assert (code, out) == (0, "alice is back with the org (idle)\n")
    # a broken hook call must not look like an instruction to the agent CLI: exit 1, one line
    code, _, err = cli("hook", "status", "sleeping", agent="alice")
    assert code == 1 and err.startswith("autoorg: unknown state 'sleeping'") and err.count("\n") == 1
    code, _, err = cli("hook", "status", "idle")
    assert code == 1 and "AUTOORG_AGENT is not set" in err


def test_idea_commands(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("idea", "add", "double", "the", "lr", agent="alice")[1] == "idea 1 queued\n"
    assert cli("idea", "add", "rope", "--body", "-", agent="bob", stdin="base 50k\n")[1] == "idea 2 queued\n"
    code, out, _ = cli("idea", "list")
    assert code == 0 and "   1  double the lr  (from alice)" in out and "   2  rope  (from bob)" in out
    assert cli("idea", "claim", "2", agent="alice")[0] == 0
    code, _, err = cli("idea", "claim", "2", agent="bob")
    assert (code, err) == (2, "autoorg: idea 2 is already claimed by alice\n")
    assert cli("idea", "done", "2", "exp", "9:", "no", "gain", agent="alice")[1] == "idea 2 done\n"
    ideas = json.loads(cli("idea", "list", "--state", "all", "--json")[1])
    assert [(i["id"], i["state"], i["claimed_by"], i["note"]) for i in ideas] == [
        ("1", "queue", None, None), ("2", "done", "alice", "exp 9: no gain")]
    assert json.loads(cli("idea", "list", "--state", "done", "--json")[1])[0]["body"] == "base 50k"


def test_board_and_standup(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert "**alice**: warmup 0 is fine" in cli("board", "post", "warmup", "0", "is", "fine", agent="alice")[1]
    comms.update_board(org, "Current best", "val_bpb 0.97")
    code, out, _ = cli("board")
    assert code == 0 and out.index("## Current best") < out.index("val_bpb 0.97") < out.index("## Posts")
    code, out, _ = cli("standup", "-", agent="bob", stdin="tried lr; next warmup\n")
    assert code == 0 and out.startswith("standup note written to ")
    assert "tried lr; next warmup" in comms.standup_path(org, "bob").read_text()


def test_the_real_entry_point_reports_bad_input_in_one_line(org: OrgPaths) -> None:
    env = {"AUTOORG_HOME": str(org.home), "AUTOORG_AGENT": "alice"}
    proc = run_cli("msg", "send", "../x", "hi", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr.count("\n")) == (2, "", 1)
    proc = run_cli("msg", "send", "bob", "hello", env=env)
    assert (proc.returncode, proc.stdout) == (0, "sent to bob\n")
    assert [m.body for m in comms.read_inbox(org, "bob")] == ["hello"]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_inbox_file_is_quarantined_and_the_inbox_still_reads(org: OrgPaths, tmp_path: Path,
                                                                       kind: str) -> None:
    """Through the real entry point, with a deadline: a FIFO once hung it, /dev/zero raised MemoryError."""
    bad = plant(org.comms / "inbox" / "alice", kind, tmp_path)
    comms.send_message(org, sender="bob", to="alice", kind="note", body="the good one")
    env = {"AUTOORG_HOME": str(org.home), "AUTOORG_AGENT": "alice"}
    proc = run_cli("inbox", "--json", env=env, timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [m["body"] for m in json.loads(proc.stdout)] == ["the good one"]
    kept = org.comms / "quarantine" / f"inbox__alice__{bad.name}"
    assert os.path.lexists(kept) and not os.path.lexists(bad)
    reason = kept.with_name(kept.name + ".reason").read_text()
    assert HOSTILE[kind][1] in reason
    if kind == "outside-link":
        assert (tmp_path / "planted.md").read_text().endswith("planted from outside\n")  # the link moved, not it


def test_options_work_in_any_position(org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("msg", "send", "bob", "--kind", "directive", "explore", "lr", agent="alice")[:2] == (0, "sent to bob\n")
    assert cli("msg", "send", "bob", "range", "--kind", "directive", "lr", "0.01", "0.1", agent="alice")[0] == 0
    assert [(m.kind, m.body) for m in comms.read_inbox(org, "bob")] == [
        ("directive", "explore lr"), ("directive", "range lr 0.01 0.1")]
    args = build_parser().parse_args(["board", "post", "--tag", "X", "warmup", "helps"])
    assert (args.action, args.tag, args.text) == ("post", "X", ["warmup", "helps"])


def test_a_command_imports_only_its_own_module_and_the_rest_still_parse() -> None:
    """An agent's `exp submit` and every run's worker are a Python start-up each: they load one command module,
    not all of them (the dashboard's Textual among them); a command that lives in another module's file (`release`
    in take.py), a typo and `--help` get the whole CLI."""
    probe = ("import sys; from autoorg.cli import build_parser, command_module; "
             "build_parser(command_module(sys.argv[1:])).parse_args(sys.argv[1:]); "
             "print(sorted(m for m in sys.modules if m.startswith('autoorg.cli.') or m == 'textual'))")
    out = subprocess.run([sys.executable, "-c", probe, "exp", "worker", "e0001"], capture_output=True, text=True,
                         check=True).stdout
    assert "'autoorg.cli.exp'" in out and "autoorg.cli.dash" not in out and "textual" not in out
    out = subprocess.run([sys.executable, "-c", probe, "release", "alice"], capture_output=True, text=True,
                         check=True).stdout
    assert "'autoorg.cli.take'" in out and "'autoorg.cli.dash'" in out
    assert command_module(["exp", "run"]) == "exp" and command_module(["--help"]) is None
    assert command_module(["common"]) == "common"  # registers nothing: build_parser falls back to every command
    assert "release" in build_parser("common")._actions[-1].choices
    bad = run_cli("nosuch")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid choice: 'nosuch'" in bad.stderr


def test_a_run_that_ends_during_or_after_a_hold_never_restores_the_hold(
        org: OrgPaths, cli: Callable[..., tuple[int, str, str]]) -> None:
    assert cli("take", "alice")[0] == 0
    comms.report_status(org, "alice", "running", "e0001 on cpu0")  # the run starts during the hold
    assert cli("release", "alice")[0] == 0
    assert comms.read_status(org, "alice")["state"] == "running"  # type: ignore[index]
    comms.swap_status(org, "alice", "running", "working", held_too=True)  # the run ends: back to what alice did before it
    assert comms.read_status(org, "alice")["state"] == "working"  # type: ignore[index]
    assert cli("pause", "bob")[0] == 0
    comms.report_status(org, "bob", "running", "e0002 on cpu1")
    assert not comms.swap_status(org, "bob", "running", "idle")  # a doorbell's swap never touches a hold
    assert comms.swap_status(org, "bob", "running", "idle", held_too=True)  # the run ends while bob is paused
    status = comms.read_status(org, "bob")
    assert status and (status["state"], status["reported"]) == ("paused", "idle")
    code, out, _ = cli("resume", "bob")
    assert (code, out) == (0, "bob is back with the org (idle)\n")
