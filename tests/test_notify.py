"""Notifications: a crash and a promotion of a real tmux org reach a real webhook on 127.0.0.1, show as a tmux
message in the org's session and in the notifications log; the webhook URL is validated when the org loads."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoorg.daemon.notify import Notifier, read_notices
from autoorg.errors import SpecError
from autoorg.experiments import ledger
from autoorg.org import build_org, plan_org, teardown_org
from autoorg.paths import OrgPaths
from autoorg.runtime import open_session, tmux
from autoorg.spec import load_org
from autoorg.state import read_state
from autoorg.testing import retry_until


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to /hook."""
    got: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def org_file(repo: Path, url: str) -> str:
    path = repo.parent / "note.yaml"  # outside the repo: it stays clean
    path.write_text(f"tag: note\npreset: 1xcpu\nnotify: {{webhook: '{url}'}}\n")
    return str(path)


def test_crash_and_promotion_reach_the_webhook_and_the_session(repo: Path, tmux_socket: str,
                                                               webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = webhook
    plan = plan_org(org_file(repo, url), task="tiny", backend="command", command="sleep 600", socket=tmux_socket)
    state = build_org(plan)
    paths = plan.paths
    # a person attached to the session (a real client on a pty): tmux shows messages to clients
    leader, follower = pty.openpty()
    client = subprocess.Popen(["tmux", "-L", tmux_socket, "attach", "-t", state.session], stdin=follower,
                              stdout=follower, stderr=follower, env={**os.environ, "TERM": "xterm"})
    try:
        retry_until(lambda: subprocess.run(["tmux", "-L", tmux_socket, "list-clients", "-t", state.session],
                                           capture_output=True, text=True).stdout.strip(), timeout=20,
                    message="a client attached")
        pid = int(tmux.pane_info(tmux_socket, state.agents["alice"].pane)["pid"])  # type: ignore[index]
        os.kill(pid, 9)
        retry_until(lambda: any(b["reason"] == "crashed" for b in got), timeout=30, message="the crash posted")
        ledger.add_promotion(paths, exp="e0001", agent="alice", old_head="2" * 40, new_head="3" * 40, metric=0.8,
                             head_mean=1.0, delta=-0.2, band=0.05, description="lower X")
        retry_until(lambda: any(b["reason"] == "promoted" for b in got), timeout=30, message="the promotion posted")
        crash = next(b for b in got if b["reason"] == "crashed")
        assert crash["org"] == "note" and crash["agent"] == "alice" and crash["text"].startswith("alice crashed")
        # why it crashed is what tmux reported: "signal 9", or no status when the pane died before tmux read it
        assert "signal 9" in crash["text"] or "no status" in crash["text"]
        promoted = next(b for b in got if b["reason"] == "promoted")
        assert promoted["agent"] == "alice" and "promoted e0001: 0.8 (-0.2) lower X" in promoted["text"]

        def messages() -> str:
            return subprocess.run(["tmux", "-L", tmux_socket, "show-messages"], capture_output=True,
                                  text=True).stdout
        retry_until(lambda: "autoorg note: alice crashed" in messages()
                    and "autoorg note: alice promoted e0001" in messages(), timeout=10,
                    message="both as tmux messages")
        assert [n.reason for n in read_notices(paths)][:2] == ["crashed", "promoted"]
    finally:
        client.kill()
        client.wait()
        os.close(leader)
        os.close(follower)


def test_a_dead_webhook_is_logged_once_and_nothing_is_said_twice(repo: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = plan_org(org_file(repo, f"http://127.0.0.1:{port}/hook"), task="tiny", backend="command",
                    command="sleep 600", runtime="headless")
    build_org(plan)
    paths = plan.paths
    try:
        dead_webhook(paths)
    finally:
        teardown_org(paths)  # its headless daemon and agents go with the test


def dead_webhook(paths: OrgPaths) -> None:
    logged: list[str] = []
    spec = load_org(str(paths.org_yaml))
    notifier = Notifier(paths, spec, open_session(paths, read_state(paths)), log=logged.append)
    for i in range(3):
        notifier.say("alice", "crashed", f"crashed {i}", key=f"test:{i}")
    notifier.say("alice", "crashed", "crashed 0", key="test:0")
    notifier.close()
    assert sum("webhook" in line and "failed" in line for line in logged) == 1
    assert [n.text for n in read_notices(paths) if n.key.startswith("test:")] == ["crashed 0", "crashed 1",
                                                                                  "crashed 2"]
    again = Notifier(paths, spec, open_session(paths, read_state(paths)), log=logged.append)
    again.say("alice", "crashed", "crashed 0", key="test:0")  # a restarted daemon does not repeat it
    again.close()
    assert len([n for n in read_notices(paths, 0) if n.key == "test:0"]) == 1


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https://", 42])
def test_a_webhook_must_be_http(repo: Path, url: Any) -> None:
    path = repo / "bad.yaml"
    path.write_text(f"preset: 1xcpu\nnotify:\n  webhook: {json.dumps(url)}\n")
    with pytest.raises(SpecError, match=r"bad.yaml:3.*notify.webhook .* is not an http\(s\) URL"):
        load_org(str(path))


def test_notify_keys_are_checked_and_kept(repo: Path) -> None:
    path = repo / "typo.yaml"
    path.write_text("preset: 1xcpu\nnotify: {webhok: 'https://ntfy.sh/x'}\n")
    with pytest.raises(SpecError, match="webhook"):
        load_org(str(path))
    path.write_text("preset: 1xcpu\nnotify: {webhook: 'https://ntfy.sh/x'}\n")
    spec = load_org(str(path))
    assert spec.webhook == "https://ntfy.sh/x"
    again = repo / "again.yaml"
    again.write_text(spec.to_yaml())
    assert load_org(str(again)).webhook == "https://ntfy.sh/x"
