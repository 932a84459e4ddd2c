"""comms.py on real files: messages, status, board, ideas (8 real processes racing), standups, quarantine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoorg import clock, comms
from autoorg.errors import CommsError
from autoorg.paths import OrgPaths
from autoorg.spec import build_spec

ORG = {"tag": "t", "task": "tiny", "agents": [
    {"name": "chief", "role": "chief"}, {"name": "alice"}, {"name": "bob"}, {"name": "carol"}]}


@pytest.fixture
def org(tmp_path: Path) -> OrgPaths:
    """An org on disk (org.yaml only): enough for comms, no tmux."""
    paths = OrgPaths(tmp_path / "repo" / ".autoorg" / "t")
    paths.home.mkdir(parents=True)
    spec = build_spec(ORG, source="test", backend="command", command="true")
    paths.org_yaml.write_text(spec.to_yaml())
    return paths


# ---------------------------------------------------------------------------------------------------------------
# messages


def test_message_round_trip_with_unknown_keys(org: OrgPaths) -> None:
    [path] = comms.send_message(org, sender="alice", to="bob", kind="result", body="lr 0.02 wins\nsee exp 7",
                                re="abc", exp="e7", extra={"priority": 2})
    assert path.parent == org.comms / "inbox" / "bob"
    assert path.name.endswith("-alice-lr-0-02-wins.md")
    assert (org.comms / "outbox" / "alice" / path.name).is_file()
    [msg] = comms.read_inbox(org, "bob")
    assert (msg.sender, msg.to, msg.kind, msg.re, msg.exp) == ("alice", "bob", "result", "abc", "e7")
    assert msg.extra == {"priority": 2}
    assert msg.body == "lr 0.02 wins\nsee exp 7"
    clock.parse_iso(msg.ts)  # a real ISO-8601 UTC timestamp


def test_recipients_all_role_and_human(org: OrgPaths) -> None:
    sent = comms.send_message(org, sender="alice", to="all", kind="note", body="hello")
    assert sorted(p.parent.name for p in sent) == ["bob", "carol", "chief"]
    [to_chief] = comms.send_message(org, sender="gate", to="chief", kind="system", body="promoted")
    assert to_chief.parent.name == "chief"
    by_role = comms.send_message(org, sender="bob", to="researcher", kind="note", body="x")
    assert sorted(p.parent.name for p in by_role) == ["alice", "carol"]  # every researcher but the sender
    [to_human] = comms.send_message(org, sender="chief", to="human", kind="note", body="need a GPU")
    assert to_human.parent.name == "human"


def test_same_second_messages_never_overwrite(org: OrgPaths) -> None:
    paths = [p for _ in range(50) for p in comms.send_message(org, sender="alice", to="bob", kind="note",
                                                             body="same text")]
    assert len(set(paths)) == 50
    assert len(comms.read_inbox(org, "bob")) == 50


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"to": "zed"}, "unknown recipient 'zed'"),
    ({"to": "../x"}, "bad recipient '../x'"),
    ({"to": "a/b"}, "bad recipient 'a/b'"),
    ({"sender": "../evil"}, "bad sender"),
    ({"sender": "mallory"}, "unknown sender 'mallory'"),
    ({"body": "  \n"}, "empty message"),
    ({"body": "x" * (comms.MAX_BODY_BYTES + 1)}, "over the 64 KiB cap"),
    ({"kind": "gossip"}, "unknown message kind"),
])
def test_bad_messages_are_refused(org: OrgPaths, kwargs: dict[str, str], needle: str) -> None:
    args = {"sender": "alice", "to": "bob", "kind": "note", "body": "hi", **kwargs}
    with pytest.raises(CommsError, match=needle.replace("(", r"\(")):
        comms.send_message(org, **args)  # type: ignore[arg-type]
    assert not (org.comms / "inbox").exists() or not any((org.comms / "inbox").rglob("*.md"))


def test_mark_read_moves_and_include_read_shows_both(org: OrgPaths) -> None:
    comms.send_message(org, sender="alice", to="bob", kind="note", body="one")
    comms.send_message(org, sender="carol", to="bob", kind="note", body="two")
    unread = comms.read_inbox(org, "bob")
    comms.mark_read(org, "bob", unread[:1])
    assert [m.body for m in comms.read_inbox(org, "bob")] == ["two"]
    every = comms.read_inbox(org, "bob", include_read=True)
    assert [(m.body, m.read) for m in every] == [("one", True), ("two", False)]
    comms.mark_read(org, "bob", every)  # idempotent
    assert comms.read_inbox(org, "bob") == []


@pytest.mark.parametrize(("content", "reason"), [
    (b"\x00\x01\x02junk", "binary content"),
    (b"---\nfrom: [unclosed\n---\nbody\n", "not valid YAML"),
    (b"no front matter here\n", "no front matter"),
    (b"---\nfrom: alice\n---\nbody\n", "lacks to, kind, ts"),
    (b"---\nfrom: \"\\e[2J\"\nto: bob\nkind: note\nts: x\n---\nbody\n", "bad sender"),
])
def test_bad_files_are_quarantined_with_reason(org: OrgPaths, content: bytes, reason: str) -> None:
    folder = org.comms / "inbox" / "bob"
    folder.mkdir(parents=True)
    bad = folder / "20250101T000000.000000Z-x-bad.md"
    bad.write_bytes(content)
    assert comms.read_inbox(org, "bob") == []  # too young to judge: maybe still being written
    assert bad.exists()
    old = time.time() - 10
    os.utime(bad, (old, old))
    assert comms.read_inbox(org, "bob") == []
    kept = org.comms / "quarantine" / "inbox__bob__20250101T000000.000000Z-x-bad.md"
    assert kept.read_bytes() == content
    assert reason in (kept.parent / (kept.name + ".reason")).read_text()


def test_quarantine_never_overwrites(org: OrgPaths) -> None:
    for i in range(3):
        f = org.comms / "board.md"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"v{i}")
        comms.quarantine(org, f, f"reason {i}")
    kept = sorted(p.name for p in (org.comms / "quarantine").iterdir())
    assert kept == ["board.md", "board.md.2", "board.md.2.reason", "board.md.3", "board.md.3.reason",
                    "board.md.reason"]


# ---------------------------------------------------------------------------------------------------------------
# status


def test_status_since_changes_only_with_state(org: OrgPaths) -> None:
    first = comms.write_status(org, "alice", "working", "exp 3")
    again = comms.write_status(org, "alice", "working", "exp 4")
    assert again["since"] == first["since"] and again["detail"] == "exp 4"
    idle = comms.write_status(org, "alice", "idle")
    assert idle["since"] != first["since"]
    assert comms.read_status(org, "alice") == {"agent": "alice", "state": "idle", "since": idle["since"],
                                              "detail": ""}
    assert comms.read_status(org, "bob") is None
    with pytest.raises(CommsError, match="unknown state 'asleep'"):
        comms.write_status(org, "alice", "asleep")


def test_broken_status_file_is_quarantined(org: OrgPaths) -> None:
    path = comms.status_path(org, "alice")
    path.parent.mkdir(parents=True)
    path.write_text('{"agent": "alice", "state": "sle')
    assert comms.read_status(org, "alice") is None and path.exists()  # young: maybe mid-write
    old = time.time() - 10
    os.utime(path, (old, old))
    assert comms.read_status(org, "alice") is None and not path.exists()
    reason = (org.comms / "quarantine" / "status__alice.json.reason").read_text()
    assert "unreadable status file" in reason
    assert comms.write_status(org, "alice", "idle")["state"] == "idle"


def test_hold_keeps_reports_and_release_restores(org: OrgPaths) -> None:
    comms.report_status(org, "alice", "working")
    comms.hold(org, "alice", "human", "taken by human")
    comms.report_status(org, "alice", "idle")  # the agent's hook fires while a person drives it
    held = comms.read_status(org, "alice")
    assert held is not None and held["state"] == "human" and held["reported"] == "idle"
    assert not comms.swap_status(org, "alice", "idle", "working")
    assert comms.unhold(org, "alice")["state"] == "idle"


# ---------------------------------------------------------------------------------------------------------------
# board


def test_board_sections_and_posts(org: OrgPaths) -> None:
    comms.post_board(org, "alice", "trying\nwarmup 0")
    comms.update_board(org, "Current best", "val_bpb 0.99 (exp 4)")
    comms.post_board(org, "bob", "lr sweep done")
    comms.update_board(org, "Current best", "val_bpb 0.97 (exp 9)")
    text = comms.read_board(org)
    assert text.count("## Current best") == 1 and "0.97 (exp 9)" in text and "0.99" not in text
    posts = text.split("## Posts")[1]
    assert "**alice**: trying warmup 0" in posts and "**bob**: lr sweep done" in posts


def test_concurrent_board_posts_are_all_kept(org: OrgPaths) -> None:
    threads = [threading.Thread(target=lambda i=i: [comms.post_board(org, "alice", f"post-{i}-{j}")
                                                    for j in range(10)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    text = comms.read_board(org)
    assert all(f"post-{i}-{j}" in text for i in range(8) for j in range(10))


# ---------------------------------------------------------------------------------------------------------------
# ideas


def test_idea_lifecycle(org: OrgPaths) -> None:
    first = comms.add_idea(org, "alice", "try rope base 50k", "details")
    second = comms.add_idea(org, "bob", "muon lr x2")
    assert (first, second) == ("1", "2")
    assert [i.title for i in comms.list_ideas(org, "queue")] == ["try rope base 50k", "muon lr x2"]
    path = comms.claim_idea(org, "carol", "1")
    assert path.name == "carol-1.md"
    with pytest.raises(CommsError, match="already claimed by carol"):
        comms.claim_idea(org, "bob", "1")
    with pytest.raises(CommsError, match="claimed by carol, not by bob"):
        comms.finish_idea(org, "bob", "1", "nope")
    comms.finish_idea(org, "carol", "1", "no gain")
    [done] = comms.list_ideas(org, "done")
    assert (done.id, done.claimed_by, done.note) == ("1", "carol", "no gain")
    with pytest.raises(CommsError, match="already done by carol"):
        comms.claim_idea(org, "bob", "1")
    with pytest.raises(CommsError, match="no idea 9"):
        comms.claim_idea(org, "bob", "9")
    assert comms.add_idea(org, "alice", "third") == "3"  # ids never reuse a done idea's number


CLAIMER = """
import sys, json
from autoorg import comms
from autoorg.paths import OrgPaths
from autoorg.errors import CommsError
paths, agent, n = OrgPaths(__import__("pathlib").Path(sys.argv[1])), sys.argv[2], int(sys.argv[3])
won = []
for i in range(1, n + 1):
    try:
        comms.claim_idea(paths, agent, str(i))
        won.append(i)
    except CommsError:
        pass
print(json.dumps(won))
"""


def test_eight_processes_race_for_ideas_one_winner_each(org: OrgPaths) -> None:
    names = ["chief", "alice", "bob", "carol"] * 2
    for i in range(40):
        comms.add_idea(org, "alice", f"idea {i}")
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(org.home), name, "40"],
                              stdout=subprocess.PIPE, text=True) for name in names]
    wins = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    flat = [i for w in wins for i in w]
    assert sorted(flat) == list(range(1, 41))  # every idea claimed, none twice
    claimed = comms.list_ideas(org, "claimed")
    assert len(claimed) == 40 and comms.list_ideas(org, "queue") == []
    assert all(i.claimed_by and i.path.name == f"{i.claimed_by}-{i.id}.md" for i in claimed)


ADDER = """
import sys
from autoorg import comms
from autoorg.paths import OrgPaths
from pathlib import Path
paths = OrgPaths(Path(sys.argv[1]))
print(comms.add_idea_unless(paths, sys.argv[2], "set LEARNING_RATE=0.002", "mine",
                            similar=lambda a, b: a.lower() == b.lower()))
"""


def test_agents_topping_the_queue_up_at_once_queue_a_similar_idea_once(org: OrgPaths) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(org.home), name], stdout=subprocess.PIPE, text=True)
             for name in ["alice", "bob", "carol", "chief"] * 2]
    ids = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(ids) == ["1"] + ["None"] * 7
    assert [i.title for i in comms.list_ideas(org, "queue")] == ["set LEARNING_RATE=0.002"]
    comms.claim_idea(org, "bob", "1")  # claimed (or done) still counts as known
    assert comms.add_idea_unless(org, "alice", "SET learning_rate=0.002", similar=lambda a, b: a.lower() == b.lower()) \
        is None


# ---------------------------------------------------------------------------------------------------------------
# standups


def test_standup_notes_append_and_filter_by_time(org: OrgPaths) -> None:
    comms.write_standup(org, "alice", "yesterday: lr sweep")
    mark = clock.now_iso()
    assert comms.standup_notes_since(org, "alice", mark) is None
    comms.write_standup(org, "alice", "today: warmup")
    assert comms.standup_notes_since(org, "alice", mark) == "today: warmup"
    text = comms.standup_path(org, "alice").read_text()
    assert "lr sweep" in text and "warmup" in text


# ---------------------------------------------------------------------------------------------------------------
# the documented templates are valid files of the protocol


TEMPLATES = Path(__file__).resolve().parent.parent / "comms" / "templates"


@pytest.mark.parametrize("name", ["message.md", "result.md", "standup-request.md"])
def test_message_templates_parse(name: str) -> None:
    msg = comms.parse_message(TEMPLATES / name)
    assert msg.kind in comms.KINDS and msg.body


def test_standup_request_template_is_what_the_daemon_sends() -> None:
    from autoorg.daemon.standups import STANDUP_REQUEST

    assert comms.parse_message(TEMPLATES / "standup-request.md").body == STANDUP_REQUEST


def test_idea_and_status_templates_parse(org: OrgPaths) -> None:
    queue = comms.ideas_dir(org, "queue")
    queue.mkdir(parents=True)
    (queue / "7.md").write_text((TEMPLATES / "idea.md").read_text())
    [idea] = comms.list_ideas(org, "queue")
    assert (idea.id, idea.author) == ("7", "bob")
    status = json.loads((TEMPLATES / "status.json").read_text())
    assert set(status) == {"agent", "state", "since", "detail"} and status["state"] in comms.STATES
