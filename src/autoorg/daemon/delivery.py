"""Doorbells: when an agent turns idle with unread messages, give it one line saying so (the message itself when
short, else "N new messages — run `autoorg inbox`"), through the org's Session; never to a `human`/`paused` agent.

What was rung is persisted per agent in `<home>/daemon/delivery/<agent>.json` (the `Cursor`), so a daemon killed at
any point and restarted neither loses nor repeats a doorbell.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoorg import comms
from autoorg.errors import AutoorgError, Say
from autoorg.paths import OrgPaths
from autoorg.runtime import Session

DOORBELL_MAX = 240  # a single one-line message up to this long is typed in full
SWEEP_EVERY_S = 5.0  # safety net for missed events (inotify queue overflow, a file written before we watched)


@dataclass
class Cursor:
    """What was rung for one agent process: `pid` (the agent's process), `notified` (unread message names already
    announced to it) and `inflight` (a doorbell being typed: {"names", "text", "full"}). Written atomically
    before and after every doorbell."""

    path: Path
    notified: set[str] = field(default_factory=set)
    inflight: dict[str, Any] | None = None
    pid: str = ""

    @classmethod
    def load(cls, path: Path) -> Cursor:
        try:
            data = json.loads(path.read_text())
            return cls(path, set(data.get("notified", [])), data.get("inflight"), str(data.get("pid", "")))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError):
            # a cursor we cannot read: start from nothing (may ring once more), keep the file for inspection
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".bad"))
            return cls(path)

    def save(self, unread: set[str] | None = None) -> None:
        if unread is not None:  # read (or quarantined) messages need no memory
            self.notified &= unread
        comms.replace_state_file(self.path, json.dumps({"pid": self.pid, "notified": sorted(self.notified),
                                                        "inflight": self.inflight}))


def doorbell_text(messages: list[comms.Message]) -> tuple[str, bool]:
    """(what to type, whether it carries the whole message). Unique enough to be found again in the pane."""
    last = messages[-1]
    clock = last.ts[11:19]
    if len(messages) == 1:
        body = last.body.strip()
        if "\n" not in body and len(body) <= DOORBELL_MAX and body.isprintable():
            kind = "" if last.kind == "note" else f" {last.kind}"
            return f"[{last.sender}{kind} {clock}] {body}", True
    senders = ", ".join(dict.fromkeys(m.sender for m in messages))
    count = f"{len(messages)} new message{'s' if len(messages) > 1 else ''}"
    return f"[autoorg {clock}] {count} from {senders} — run `autoorg inbox`", False


class Delivery:
    """The daemon's doorbell process: `schedule` an agent when its inbox or status changes; `tick` (every
    SWEEP_EVERY_S) looks at every agent. Jobs run in a pool, one per agent at a time."""

    every_s = SWEEP_EVERY_S

    def __init__(self, paths: OrgPaths, session: Session, agents: list[str], *, log: Say,
                 poke: Callable[[str], None], stop: threading.Event) -> None:
        self.paths = paths
        self.session = session
        self.agents = agents
        self.log = log
        self.poke = poke  # asks the core loop to schedule an agent again (after a backoff)
        self.stop = stop
        # agent -> its process id, as the agent watch last saw it; replaced whole, never edited
        self.pids: dict[str, str] = {}
        self.cursors: dict[str, Cursor] = {}
        self.retry_at: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self._jobs_lock = threading.Lock()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self.pool = ThreadPoolExecutor(max_workers=min(16, max(2, len(agents))), thread_name_prefix="deliver")

    def tick(self) -> None:
        for agent in self.agents:
            self.schedule(agent)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def schedule(self, agent: str) -> None:
        """Run delivery for agent in the pool; one job per agent at a time, re-run once if poked meanwhile."""
        if agent not in self.agents:
            return
        with self._jobs_lock:
            if agent in self._busy:
                self._again.add(agent)
                return
            self._busy.add(agent)
        try:
            self.pool.submit(self._deliver_job, agent)
        except RuntimeError:  # pool shut down: we are stopping
            with self._jobs_lock:
                self._busy.discard(agent)

    def _deliver_job(self, agent: str) -> None:
        while True:
            try:
                self.deliver_pending(agent)
            except AutoorgError as exc:
                self.log(f"{agent}: delivery error: {exc}")
            except Exception:
                self.log(f"{agent}: unexpected delivery error:\n{traceback.format_exc()}")
            with self._jobs_lock:
                if agent in self._again and not self.stop.is_set():
                    self._again.discard(agent)
                    continue
                self._busy.discard(agent)
                return

    def cursor(self, agent: str) -> Cursor:
        if agent not in self.cursors:
            self.cursors[agent] = Cursor.load(self.paths.home / "daemon" / "delivery" / f"{agent}.json")
        return self.cursors[agent]

    def deliver_pending(self, agent: str) -> None:
        """Ring agent's doorbell if it is idle and has messages it was not told about yet."""
        pid = self.pids.get(agent, "")
        if not pid or time.monotonic() < self.retry_at.get(agent, 0.0):
            return
        cursor = self.cursor(agent)
        if cursor.pid != pid:  # a new process (started, restarted, resumed) has heard nothing yet
            cursor.pid, cursor.notified, cursor.inflight = pid, set(), None
            cursor.save()
        if cursor.inflight and not self._finish_inflight(agent, cursor):
            return
        status = comms.read_status(self.paths, agent)
        if not status or status["state"] != "idle":
            return
        unread = comms.unread_files(self.paths, agent)
        fresh = [f for f in unread if f.name not in cursor.notified]
        if not fresh:
            return
        messages = comms.load_messages(self.paths, fresh)
        if not messages:
            return
        text, full = doorbell_text(messages)
        cursor.inflight = {"names": [m.name for m in messages], "text": text, "full": full}
        cursor.save({f.name for f in unread})
        if not comms.swap_status(self.paths, agent, "idle", "working", f"doorbell: {text[:80]}"):
            cursor.inflight = None  # it stopped being idle meanwhile; its next idle rings
            cursor.save()
            return
        if self._type(agent, text):
            self._delivered(agent, cursor)
        else:
            self._failed(agent, "doorbell not taken")

    def _finish_inflight(self, agent: str, cursor: Cursor) -> bool:
        """Settle a doorbell a previous attempt (or a killed daemon) left half done. True when settled."""
        assert cursor.inflight is not None
        status = comms.read_status(self.paths, agent)
        if status and status["state"] in comms.HELD_STATES:
            return False
        text = str(cursor.inflight["text"])
        fate = self.session.settle_line(agent, text)
        if fate == "blocked":
            return False
        detail = f"doorbell: {text[:80]}"
        if fate != "absent":
            taken = fate == "taken"
        elif (status and status["state"] == "working" and status["detail"] == detail) or \
                comms.swap_status(self.paths, agent, "idle", "working", detail):
            taken = self._type(agent, text)  # never typed: the agent still waits for it
        else:  # the agent is not waiting for input: drop this doorbell, its messages ring at the next idle
            cursor.inflight = None
            cursor.save()
            return True
        if taken:
            self._delivered(agent, cursor)
            return True
        self._failed(agent, "doorbell not taken (retry)")
        return False

    def _type(self, agent: str, text: str) -> bool:
        try:
            return self.session.send_line(agent, text)
        except AutoorgError as exc:
            self.log(f"{agent}: cannot give it input: {exc}")
            return False

    def _delivered(self, agent: str, cursor: Cursor) -> None:
        inflight = cursor.inflight or {}
        names = list(inflight.get("names", []))
        if inflight.get("full"):  # the whole message was typed: it has been read
            folder = comms.inbox_dir(self.paths, agent)
            (folder / "read").mkdir(parents=True, exist_ok=True)
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.replace(folder / name, folder / "read" / name)
        cursor.notified.update(names)
        cursor.inflight = None
        cursor.save({f.name for f in comms.unread_files(self.paths, agent)})
        self.backoff.pop(agent, None)
        self.log(f"{agent}: rang: {inflight.get('text', '')[:100]}")

    def _failed(self, agent: str, why: str) -> None:
        delay = min(self.backoff.get(agent, 0.25) * 2, 30.0)
        self.backoff[agent] = delay
        self.retry_at[agent] = time.monotonic() + delay
        timer = threading.Timer(delay + 0.01, self.poke, args=(agent,))
        timer.daemon = True
        timer.start()
        self.log(f"{agent}: {why}; retrying in {delay:.1f}s")
