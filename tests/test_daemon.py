"""The daemon end to end: `autoorg up` on a private tmux server, real echo agents (tests/comms_echo_agent.py) that
report idle through `autoorg hook status idle`, the real daemon in the session's `daemon` window, real inotify."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoorg import comms
from autoorg.daemon.agent_watch import SESSION_GONE_S
from autoorg.daemon.delivery import Cursor, doorbell_text
from autoorg.paths import OrgPaths, org_paths
from autoorg.runtime import tmux
from autoorg.testing import retry_until, run_cli
from tests.hostile_files import HOSTILE, plant

ECHO = f"{sys.executable} {Path(__file__).with_name('comms_echo_agent.py')}"


def org_file(repo: Path, **spec: object) -> Path:
    """An org YAML next to the repo (not in it): two echo agents by default, and only 2 baseline runs for the
    gate to start (it runs in the daemon; 8 runs of the task per test would only slow these tests down)."""
    org = {"tag": "2xcpu", "defaults": {"backend": "command", "command": ECHO}, "agents": ["alice", "bob"],
           "processes": {"baseline": {"repeats": 2}}, **spec}
    path = repo.parent / f"{org['tag']}.yaml"
    path.write_text(json.dumps(org))
    return path


def up(repo: Path, **spec: object) -> OrgPaths:
    proc = run_cli("up", str(org_file(repo, **spec)), "--task", "tiny", "--no-attach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    tag = re.search(r"org (\S+) is up", proc.stdout)
    assert tag, proc.stdout
    return org_paths(repo, tag[1])


def state_of(paths: OrgPaths, agent: str) -> str | None:
    status = comms.read_status(paths, agent)
    return status["state"] if status else None


def wait_idle(paths: OrgPaths, *agents: str) -> None:
    for agent in agents:
        retry_until(lambda a=agent: state_of(paths, a) == "idle", timeout=30, message=f"{agent} idle")


def echo_log(paths: OrgPaths, agent: str) -> str:
    path = paths.home / "echo" / f"{agent}.log"
    return path.read_text() if path.exists() else ""


def daemon_pid(paths: OrgPaths) -> int:
    text = retry_until(lambda: (paths.locks / "daemon.lock").exists() and (paths.locks / "daemon.lock").read_text(),
                       timeout=30, message="daemon pid")
    return int(text.strip())


def pane_of(paths: OrgPaths, socket: str, agent: str) -> str:
    states = tmux.pane_states(socket, tmux.session_name(paths.tag)) or {}
    return next(p for p, s in states.items() if s.agent == agent)


def test_message_reaches_echo_agent_at_its_next_idle(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice", "bob")
    comms.write_status(paths, "alice", "working", "busy with exp 3")  # mid-turn: no doorbell now
    proc = run_cli("msg", "send", "alice", "try", "lr", "0.02", cwd=repo)
    assert proc.returncode == 0 and proc.stdout.strip() == "sent to alice", proc.stderr
    time.sleep(1.0)
    assert "lr 0.02" not in echo_log(paths, "alice")
    assert len(comms.read_inbox(paths, "alice")) == 1
    proc = run_cli("hook", "status", "idle", env={"AUTOORG_AGENT": "alice"}, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    retry_until(lambda: "lr 0.02" in echo_log(paths, "alice"), timeout=30, message="doorbell in alice's log")
    assert re.search(r"^doorbell: \[human \d\d:\d\d:\d\d\] try lr 0.02$", echo_log(paths, "alice"), re.M)
    retry_until(lambda: comms.read_inbox(paths, "alice") == [], timeout=30, message="typed in full: marked read")
    assert echo_log(paths, "bob") == ""
    # a long (multi-line) message rings "N new messages"; the agent runs `autoorg inbox` and sees it all
    comms.send_message(paths, sender="bob", to="alice", kind="result", body="exp 7\nval_bpb 0.97\n" + "x" * 300)
    retry_until(lambda: "val_bpb 0.97" in echo_log(paths, "alice"), timeout=30, message="inbox shown")
    assert "1 new message from bob — run `autoorg inbox`" in echo_log(paths, "alice")
    assert "alice: rang:" in (paths.logs / "daemon.log").read_text()
    # the verification gate runs in the daemon: its steps log there (here: the new org's baseline runs)
    retry_until(lambda: re.search(r"gate: (?!found)", (paths.logs / "daemon.log").read_text()), timeout=30,
                message="a gate step in the daemon's log")


def test_human_pane_receives_nothing_until_released(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice")
    assert run_cli("take", "alice", cwd=repo).returncode == 0
    assert state_of(paths, "alice") == "human"
    for i in range(3):
        assert run_cli("msg", "send", "alice", f"while-held-{i}", cwd=repo).returncode == 0
    comms.send_message(paths, sender="bob", to="alice", kind="note", body="and one from bob")
    time.sleep(1.5)  # the daemon handled these files' events by now: it had every chance to type
    pane = pane_of(paths, tmux_socket, "alice")
    assert not any("while-held" in line for line in tmux.capture(tmux_socket, pane))
    assert echo_log(paths, "alice") == "" and len(comms.read_inbox(paths, "alice")) == 4
    proc = run_cli("release", "alice", cwd=repo)
    assert proc.returncode == 0 and "back with the org (idle)" in proc.stdout
    retry_until(lambda: all(f"while-held-{i}" in echo_log(paths, "alice") for i in range(3)), timeout=30,
                message="held messages after release")
    assert "4 new messages from human, bob" in echo_log(paths, "alice")


def test_200_messages_each_delivered_once_across_daemon_sigkills(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice", "bob")
    session = tmux.session_name(paths.tag)
    tokens = [f"tok{i:03d}!" for i in range(200)]

    def write_all() -> None:
        for i, token in enumerate(tokens):
            comms.send_message(paths, sender="human", to="alice" if i % 2 else "bob", kind="note",
                               body=f"msg {token}")
            time.sleep(0.01)

    writer = threading.Thread(target=write_all)
    writer.start()
    killed: set[int] = set()
    try:
        for _ in range(3):  # kill -9 the daemon three times while messages flow, restart it in its window
            time.sleep(0.6)
            pid = retry_until(lambda: (p := daemon_pid(paths)) not in killed and not exited(p) and p,
                              timeout=30, message="the restarted daemon")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            retry_until(lambda: (tmux.pane_states(tmux_socket, session) or {}) and any(
                s.dead for s in (tmux.pane_states(tmux_socket, session) or {}).values()), timeout=30,
                message="daemon dead")
            tmux.respawn_pane(tmux_socket, f"{session}:daemon", {})
    finally:
        writer.join(timeout=60)

    def delivered() -> bool:
        text = echo_log(paths, "alice") + echo_log(paths, "bob")
        return all(t in text for t in tokens)

    retry_until(delivered, timeout=90, interval=0.2, message="all 200 messages delivered")
    text = echo_log(paths, "alice") + echo_log(paths, "bob")
    counts = {t: text.count(t) for t in tokens}
    assert {t: n for t, n in counts.items() if n != 1} == {}
    assert comms.read_inbox(paths, "alice") == [] and comms.read_inbox(paths, "bob") == []
    # the last restart may still be starting when the messages were all in (they can arrive before the last kill)
    retry_until(lambda: (p := daemon_pid(paths)) not in killed and not exited(p), timeout=30,
                message="a live daemon that was never killed")


def test_crashed_agent_is_restarted_then_left_crashed_with_reason(repo: Path, tmux_socket: str) -> None:
    marker = repo / "starts.log"
    crash = f"{sys.executable} -c \"open('{marker}', 'a').write('start\\n'); import time; time.sleep(0.3); raise SystemExit(3)\""
    paths = up(repo, tag="crashy", agents=[{"name": "alice", "command": crash}],
               processes={"restart": {"limit": 2, "backoff": "0.2s"}, "baseline": {"repeats": 2}})
    retry_until(lambda: (comms.read_status(paths, "alice") or {}).get("detail", "").endswith(
        "gave up after 2 restarts (see its pane)"), timeout=30, message="alice given up")
    assert marker.read_text().count("start") == 3  # the first run and two restarts
    status = comms.read_status(paths, "alice")
    assert status and status["state"] == "crashed"
    log = (paths.logs / "daemon.log").read_text()
    # the exit status is tmux's to report, and tmux 3.3 sometimes never collects it
    exited_how = r"exited (with status 3|\(tmux reported no status\))"
    assert re.search(rf"alice: {exited_how}; restarting in 0\.2s \(1/2\)", log)
    assert re.search(rf"alice: {exited_how}; restarting in 0\.4s \(2/2\)", log)
    proc = run_cli("status", cwd=repo)
    assert "crashed: " in proc.stdout and "gave up after 2 restarts" in proc.stdout


def test_standup_requests_notes_and_digests_them_to_the_chief(repo: Path, tmux_socket: str) -> None:
    paths = up(repo, tag="su", agents=[{"name": "chief", "role": "chief"}, "alice", "bob"],
               processes={"standup": {"every": "3s"}, "baseline": {"repeats": 2}})
    retry_until(lambda: "notes of alice" in echo_log(paths, "chief") and "notes of bob" in echo_log(paths, "chief"),
                timeout=40, interval=0.2, message="standup digest in the chief's inbox")
    log = echo_log(paths, "chief")
    assert "Standup digest" in log and "### alice" in log and "### bob" in log
    assert "Standup:" in echo_log(paths, "alice")
    assert comms.standup_notes_since(paths, "bob", "2000-01-01T00:00:00.000000Z") is not None


def test_quarantine_keeps_junk_and_good_messages_still_arrive(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice")
    junk = paths.comms / "inbox" / "alice" / "20200101T000000.000000Z-x-junk.md"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"\x89PNG\x00\x00binary")
    old = time.time() - 60
    os.utime(junk, (old, old))
    comms.send_message(paths, sender="bob", to="alice", kind="note", body="good one")
    retry_until(lambda: "good one" in echo_log(paths, "alice"), timeout=30, message="good message")
    kept = paths.comms / "quarantine" / "inbox__alice__20200101T000000.000000Z-x-junk.md"
    assert kept.read_bytes() == b"\x89PNG\x00\x00binary"
    assert "binary content" in kept.with_name(kept.name + ".reason").read_text()


def test_hostile_inbox_files_never_stop_delivery_or_down(repo: Path, tmux_socket: str, tmp_path: Path) -> None:
    """A FIFO once hung the daemon (and `down` with it), /dev/zero raised MemoryError in it: each bad file is
    quarantined with its reason and the next good message still arrives."""
    paths = up(repo)
    wait_idle(paths, "alice")
    planted = {kind: plant(paths.comms / "inbox" / "alice", kind, tmp_path) for kind in HOSTILE}
    comms.send_message(paths, sender="bob", to="alice", kind="note", body="after the junk")
    retry_until(lambda: "after the junk" in echo_log(paths, "alice"), timeout=30, message="good message")
    for kind, bad in planted.items():
        kept = paths.comms / "quarantine" / f"inbox__alice__{bad.name}"
        reason = kept.with_name(kept.name + ".reason")  # written just after the move: wait for it
        retry_until(reason.exists, timeout=30, message=f"the {kind} file's reason")
        assert HOSTILE[kind][1] in reason.read_text()
    assert "planted from outside" not in echo_log(paths, "alice")
    pid = daemon_pid(paths)
    down = run_cli("down", "--tag", paths.tag, cwd=repo, timeout=60)
    assert down.returncode == 0, down.stderr
    retry_until(lambda: exited(pid), timeout=30, message="daemon gone after down")


def test_resume_rebuilds_a_dead_session_and_delivers_what_waited(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice")
    heads = {a: subprocess.run(["git", "rev-parse", f"org/2xcpu.{a}"], cwd=repo, capture_output=True, text=True)
             .stdout for a in ("alice", "bob")}
    subprocess.run(["tmux", "-L", tmux_socket, "kill-server"], check=True)
    proc = run_cli("msg", "send", "alice", "sent-while-dead", cwd=repo)
    assert proc.returncode == 0
    assert "stopped" not in proc.stderr or "kept in its inbox" in proc.stderr
    proc = run_cli("up", str(org_file(repo)), "--task", "tiny", "--no-attach", cwd=repo)
    assert proc.returncode == 2 and "`autoorg up --resume --tag 2xcpu` to restart it" in proc.stderr
    proc = run_cli("up", "--resume", "--tag", "2xcpu", "--no-attach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "org 2xcpu resumed: 2 agents" in proc.stdout
    retry_until(lambda: "sent-while-dead" in echo_log(paths, "alice"), timeout=30, message="waiting message")
    assert {a: subprocess.run(["git", "rev-parse", f"org/2xcpu.{a}"], cwd=repo, capture_output=True,
                              text=True).stdout for a in ("alice", "bob")} == heads
    proc = run_cli("up", "--resume", "--tag", "2xcpu", "--no-attach", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is running" in proc.stderr


def test_polling_daemon_delivers(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice")
    session = tmux.session_name(paths.tag)
    stop_daemon(paths)
    daemon = subprocess.Popen([sys.executable, "-m", "autoorg", "daemon", "--polling"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        retry_until(lambda: "polling" in (paths.logs / "daemon.log").read_text(), timeout=30,
                    message="polling daemon")
        comms.send_message(paths, sender="bob", to="alice", kind="note", body="polled hello")
        retry_until(lambda: "polled hello" in echo_log(paths, "alice"), timeout=30, message="polled delivery")
        second = run_cli("daemon", cwd=repo, timeout=60)  # one daemon per org
        assert (second.returncode, second.stderr) == (
            2, f"autoorg: a daemon already runs for org '2xcpu' (pid {daemon.pid})\n")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert daemon.returncode == 0, daemon.stderr.read() if daemon.stderr else ""
    assert tmux.has_session(tmux_socket, session)


def test_a_daemon_whose_tmux_session_is_gone_stops(repo: Path, tmux_socket: str) -> None:
    """`tmux kill-server` without `down`: a daemon outside the session (here one started by hand) does not outlive
    the agents it serves; it stops on its own, once the session has been missing for SESSION_GONE_S."""
    paths = up(repo)
    wait_idle(paths, "alice")
    stop_daemon(paths)
    daemon = subprocess.Popen([sys.executable, "-m", "autoorg", "daemon"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        retry_until(lambda: (paths.logs / "daemon.log").read_text().count("daemon for org") == 2, timeout=30,
                    message="the hand-started daemon")
        subprocess.run(["tmux", "-L", tmux_socket, "kill-server"], check=True)
        killed = time.monotonic()
        assert daemon.wait(timeout=SESSION_GONE_S + 30) == 0, daemon.stderr.read() if daemon.stderr else ""
        assert time.monotonic() - killed >= SESSION_GONE_S - 1  # not at the first failed look
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    log = (paths.logs / "daemon.log").read_text()
    assert "tmux session has been gone" in log and log.rstrip().endswith("daemon stopped")


def exited(pid: int) -> bool:
    """Gone, or a zombie: tmux 3.3 sometimes reaps a pane's exited process only at the next SIGCHLD."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def stop_daemon(paths: OrgPaths) -> None:
    pid = daemon_pid(paths)
    os.kill(pid, signal.SIGTERM)
    retry_until(lambda: exited(pid), timeout=30, message="daemon stopped")


def start_daemon(paths: OrgPaths, socket: str) -> None:
    started = (paths.logs / "daemon.log").read_text().count("daemon for org")
    session = tmux.session_name(paths.tag)
    retry_until(lambda: any(s.dead for s in (tmux.pane_states(socket, session) or {}).values()), timeout=30,
                message="the daemon's pane dead")
    tmux.respawn_pane(socket, f"{session}:daemon", {})
    retry_until(lambda: (paths.logs / "daemon.log").read_text().count("daemon for org") > started,
                timeout=30, message="daemon started")


@pytest.mark.parametrize("entered", [True, False])
def test_restarted_daemon_settles_a_half_done_doorbell_without_repeating_it(
        repo: Path, tmux_socket: str, entered: bool) -> None:
    """The daemon died after typing a doorbell (with or without its Enter): the next one finishes it, once."""
    paths = up(repo)
    wait_idle(paths, "alice")
    stop_daemon(paths)
    [path] = comms.send_message(paths, sender="bob", to="alice", kind="note", body="half-done doorbell")
    [message] = comms.read_inbox(paths, "alice")
    text, full = doorbell_text([message])
    pane = pane_of(paths, tmux_socket, "alice")
    pid = (tmux.pane_states(tmux_socket, tmux.session_name(paths.tag)) or {})[pane].pid
    Cursor(paths.home / "daemon" / "delivery" / "alice.json", set(),
           {"names": [path.name], "text": text, "full": full}, pid).save()
    assert comms.swap_status(paths, "alice", "idle", "working", f"doorbell: {text[:80]}")
    tmux.send_text(tmux_socket, pane, text)
    if entered:
        tmux.send_enter(tmux_socket, pane)
        retry_until(lambda: "half-done doorbell" in echo_log(paths, "alice"), timeout=30,
                    message="the agent got it")
    start_daemon(paths, tmux_socket)
    retry_until(lambda: (comms.inbox_dir(paths, "alice") / "read" / path.name).exists(), timeout=30,
                message="message marked read")
    retry_until(lambda: state_of(paths, "alice") == "idle", timeout=30, message="alice idle again")
    time.sleep(1.0)  # alice's idle report was an event: a repeat would be typed by now
    assert echo_log(paths, "alice").count("half-done doorbell") == 1
    assert f"doorbell: {text}\n" in echo_log(paths, "alice")  # typed once, not twice on one line


def watch_masks(pid: int) -> dict[int, int]:
    """inode -> event mask of every inotify watch a process holds (the `inotify wd:` lines of its descriptors)."""
    masks = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("inotify wd:"):
                    masks[int(line.split("ino:")[1].split()[0], 16)] = int(line.split("mask:")[1].split()[0], 16)
    return masks


def watched_inodes(pid: int) -> set[int]:
    """The inodes a process watches with inotify."""
    return set(watch_masks(pid))


IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN, IN_MOVED_TO, IN_CREATE = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x80, 0x100)


def test_the_daemon_is_not_woken_by_the_ledgers_reads_and_writes(repo: Path, tmux_socket: str) -> None:
    """Every ledger connection opens, writes and closes ledger.sqlite, -wal and -shm in the org's folder (a busy org
    made ~1,500 events a second there): the daemon's watches ask the kernel only for what it routes."""
    paths = up(repo)
    wait_idle(paths, "alice")
    pid, folders = daemon_pid(paths), (paths.home, paths.comms, comms.inbox_dir(paths, "alice"))
    # the daemon writes its pid before it starts watching: wait for its watches on all three
    def all_watched() -> dict[int, int]:
        found = watch_masks(pid)
        return found if all(f.stat().st_ino in found for f in folders) else {}

    masks = retry_until(all_watched, timeout=30, message="the daemon's watches")
    for folder in folders:
        mask = masks[folder.stat().st_ino]
        assert mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) == IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
        assert mask & (IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_NOWRITE | IN_OPEN) == 0, f"{folder}: {mask:#x}"
    run_cli("msg", "send", "alice", "still delivered", env={"AUTOORG_HOME": str(paths.home)})
    retry_until(lambda: "still delivered" in echo_log(paths, "alice"), timeout=30, message="delivery")


def test_runs_with_their_source_trees_add_no_watches(repo: Path, tmux_socket: str) -> None:
    paths = up(repo)
    wait_idle(paths, "alice")
    pid = daemon_pid(paths)
    run_cli("msg", "send", "alice", "before the runs", env={"AUTOORG_HOME": str(paths.home)})
    retry_until(lambda: "before the runs" in echo_log(paths, "alice"), timeout=30, message="delivery")
    for i in range(30):  # what 30 runs leave behind: a folder each, with a copy of the source while it runs
        (paths.runs / f"x{i:04d}" / "src" / "pkg" / "sub").mkdir(parents=True)
        (paths.runs / f"x{i:04d}" / "result.json").write_text("{}\n")
    run_cli("msg", "send", "alice", "after the runs", env={"AUTOORG_HOME": str(paths.home)})
    retry_until(lambda: "after the runs" in echo_log(paths, "alice"), timeout=30, message="delivery")
    # by inode, so a comms folder made meanwhile (an inbox's read/) cannot make this flaky
    under_runs = {d.stat().st_ino for d in [paths.runs, *paths.runs.rglob("*")] if d.is_dir()}
    assert watched_inodes(pid) & under_runs == set()
