"""Notifications: when an agent waits for input (a permission prompt, a question), crashes, or the org promotes,
the daemon says so three ways: a line in `logs/notifications.jsonl` (this module owns it; the dashboard shows the
latest), a tmux message in the org's session (`Session.show_message`), and, when the org sets
`notify: {webhook: URL}`, a JSON POST of {org, agent, reason, text} to that URL (ntfy, Slack and Discord accept
one) from a thread of its own, so a slow or dead endpoint never holds up the daemon.

Each event has a key (an agent's state with the moment it began; a promotion's id) that is written with it, so a
restarted daemon never says the same thing twice."""

from __future__ import annotations

import json
import os
import queue
import threading
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from autoorg import comms
from autoorg.clock import now_iso
from autoorg.errors import Say
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.runtime import Session
from autoorg.spec import OrgSpec

NOTIFY_EVERY_S = 1.0
WEBHOOK_TIMEOUT_S = 5.0
STATES = {"waiting": "is waiting for input", "crashed": "crashed"}  # agent states worth telling a person
TAIL_BYTES = 64 * 1024  # of the notifications log: the keys a restarted daemon must not repeat


@dataclass
class Notice:
    ts: str
    org: str
    agent: str
    reason: str  # waiting | crashed | promoted
    text: str
    key: str

    def line(self) -> str:
        """One line for a person: what the tmux message and the dashboard say."""
        return f"{self.agent} {self.text}"


def notices_path(paths: OrgPaths) -> Path:
    return paths.logs / "notifications.jsonl"


def read_notices(paths: OrgPaths, limit: int = 10) -> list[Notice]:
    """The latest `limit` notices, oldest first (reads only the log's tail; a damaged line is skipped)."""
    try:
        with notices_path(paths).open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    out: list[Notice] = []
    for line in lines:
        try:
            data = json.loads(line)
            out.append(Notice(**{k: str(data[k]) for k in Notice.__dataclass_fields__}))
        except (ValueError, TypeError, KeyError):
            continue
    return out[-limit:] if limit else out


def add_notice(paths: OrgPaths, notice: Notice) -> None:
    """Append one notice (a single O_APPEND write: lines never interleave)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(notices_path(paths), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(asdict(notice)) + "\n").encode())
    finally:
        os.close(fd)


def post_webhook(url: str, notice: Notice) -> None:
    """POST {org, agent, reason, text} as JSON; raises OSError (URLError, HTTPError, timeouts) on failure."""
    body = json.dumps({"org": notice.org, "agent": notice.agent, "reason": notice.reason,
                       "text": notice.line()}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "autoorg"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310 - http(s) checked
        response.read(1024)


class Notifier:
    """The daemon's notification process: `tick` looks at the agents' states and the ledger's promotions, and
    says each new event once."""

    every_s = NOTIFY_EVERY_S

    def __init__(self, paths: OrgPaths, spec: OrgSpec, session: Session, *, log: Say) -> None:
        self.paths = paths
        self.spec = spec
        self.session = session
        self.log = log
        self.said = {n.key for n in read_notices(paths, 0)}
        self.stamp: tuple[int, ...] = ()
        self.posts: queue.SimpleQueue[Notice | None] = queue.SimpleQueue()
        self.failing = False
        self.poster: threading.Thread | None = None
        if spec.webhook:
            self.poster = threading.Thread(target=self._post_loop, args=(spec.webhook,), name="webhook",
                                           daemon=True)
            self.poster.start()

    def tick(self) -> None:
        for agent in self.spec.names:
            status = comms.read_status(self.paths, agent) or {}
            state = status.get("state", "")
            if state in STATES:
                detail = status.get("detail") or ""
                self.say(agent, state, STATES[state] + (f": {detail}" if detail else ""),
                         key=f"{agent}:{state}:{status.get('since', '')}")
        stamp = ledger.change_stamp(self.paths)
        if stamp and stamp != self.stamp:
            self.stamp = stamp
            for p in ledger.promotions(self.paths):
                delta = "" if p["delta"] is None else f" ({p['delta']:+.4g})"
                self.say(p["agent"], "promoted", f"promoted {p['exp']}: {p['metric']:.6g}{delta} {p['description']}",
                         key=f"promotion:{p['id']}")

    def say(self, agent: str, reason: str, text: str, *, key: str) -> None:
        """Tell a new event everywhere it goes; an event already told (by key) is skipped."""
        if key in self.said:
            return
        self.said.add(key)
        notice = Notice(ts=now_iso(), org=self.paths.tag, agent=agent, reason=reason, text=text, key=key)
        add_notice(self.paths, notice)
        self.log(f"notify: {notice.line()}")
        try:
            self.session.show_message(f"autoorg {self.paths.tag}: {notice.line()}")
        except Exception as exc:  # a tmux without clients or a dying session: the log and the dashboard still say it
            self.log(f"notify: no tmux message ({exc})")
        if self.poster is not None:
            self.posts.put(notice)

    def _post_loop(self, url: str) -> None:
        while (notice := self.posts.get()) is not None:
            try:
                post_webhook(url, notice)
            except (OSError, ValueError) as exc:
                if not self.failing:  # once until it works again: a dead endpoint must not flood the log
                    self.log(f"notify: webhook {url} failed ({exc}); will keep trying, quietly")
                self.failing = True
                continue
            if self.failing:
                self.log(f"notify: webhook {url} works again")
            self.failing = False

    def close(self) -> None:
        if self.poster is not None:
            self.posts.put(None)
            self.poster.join(timeout=WEBHOOK_TIMEOUT_S + 1)
