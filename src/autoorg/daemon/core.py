"""The org's daemon (`autoorg daemon`: in the session's `daemon` window, or a process of its own headless).

It watches `comms/` and `runs/` (watchdog: inotify, or polling), and
- rings an agent's doorbell when it turns idle with unread messages: the message itself when short, else
  "N new messages — run `autoorg inbox`", given as a line of input (typed into its pane and confirmed, or written
  to its stdin headless); never to a `human`/`paused` agent;
- watches the agents (through the org's `Session`), marks dead ones `crashed` and restarts them with backoff;
- runs standups (`processes: {standup: {every: 30m}}`) and sends the digest to the chief (or the board);
- runs the verification gate (`autoorg.gate.step`) in its own thread when a result lands and every few seconds.

What it has rung is persisted per agent in `<home>/daemon/delivery/<agent>.json`, so a daemon killed at any point
and restarted neither loses nor repeats a doorbell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from autoorg import clock, comms, gate
from autoorg.errors import AutoorgError, DaemonError, Say, StateError
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.runtime import Liveness, Session, open_session, pane_environment
from autoorg.spec import load_org
from autoorg.state import org_status_word, read_state

DOORBELL_MAX = 240  # a single one-line message up to this long is typed in full
STABLE_AFTER_S = 60.0  # an agent alive this long after a restart has its failure count reset
PANES_EVERY_S = 1.0
SWEEP_EVERY_S = 5.0  # safety net for missed events (inotify queue overflow, a file written before we watched)
GATE_EVERY_S = 10.0
GATE_STEPS_PER_WAKE = 20
STANDUP_REQUEST = ("Standup: in a few lines, what you tried since the last standup, what you learned (with exp "
                   "ids) and what you will try next; send it with `autoorg standup \"...\"`.")


# ---------------------------------------------------------------------------------------------------------------
# Delivery cursor


@dataclass
class Cursor:
    """What was rung for one agent process: `pid` (the pane's process), `notified` (unread message names already
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


# ---------------------------------------------------------------------------------------------------------------
# The daemon


class _Events(FileSystemEventHandler):
    """Watchdog thread: only classify the path and queue it; all work happens in the daemon's own threads."""

    def __init__(self, notice: Callable[[str], None]) -> None:
        self.notice = notice

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "moved", "closed"):
            return
        # our own writes are renames: the new name is dest_path
        path = event.dest_path if event.event_type == "moved" else event.src_path
        self.notice(os.fsdecode(path))


class Daemon:
    """One org's daemon. `run()` blocks until `stop` is set (the CLI sets it on SIGTERM, SIGINT, SIGHUP) or the
    org is marked stopped. Threads: the watchdog observer (queues paths only), the main loop (agent watch, sweeps,
    standups), a pool delivering doorbells (one job per agent at a time) and the gate's own thread."""

    def __init__(self, paths: OrgPaths, *, socket: str | None = None, polling: bool = False,
                 out: Say | None = None) -> None:
        self.paths = paths
        self.polling = polling
        try:
            state = read_state(paths)
        except StateError as exc:
            raise DaemonError(f"no org at {paths.home} ({exc}); start one with `autoorg up`") from None
        if socket and not state.headless:
            state.socket = socket
        self.socket = state.socket
        self.headless = state.headless
        self.session: Session = open_session(paths, state)
        self.out = out or (lambda line: print(line, flush=True))
        self.stop = threading.Event()
        self.dirty: queue.SimpleQueue[str] = queue.SimpleQueue()
        # agent -> its process id, as the session last saw it; replaced whole, never edited
        self.pids: dict[str, str] = {}
        self.cursors: dict[str, Cursor] = {}
        self.retry_at: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.restarts: dict[str, list[float]] = {}  # agent -> monotonic times of restarts since it was stable
        self.restart_due: dict[str, float] = {}
        self.dead_since: dict[str, float] = {}  # agent -> when first seen dead without an exit status
        self._jobs_lock = threading.Lock()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._gate_wake = threading.Event()
        self._log_lock = threading.Lock()
        self._logfile: TextIO | None = None
        self._lockfile: TextIO | None = None
        if not paths.org_yaml.is_file():
            raise DaemonError(f"no org at {paths.home} (no org.yaml); start one with `autoorg up`")
        self.spec = load_org(str(paths.org_yaml))
        self.agents = self.spec.names
        processes = self.spec.processes  # typed and validated when the org file was loaded
        self.standup_every = processes.standup.every
        self.restart_limit = processes.restart.limit
        self.restart_backoff = processes.restart.backoff
        self.pool = ThreadPoolExecutor(max_workers=min(16, max(2, len(self.agents))),
                                       thread_name_prefix="deliver")

    # -- logging ------------------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        line = f"{datetime.now(UTC).strftime('%H:%M:%S')} {message}"
        with self._log_lock:
            self.out(line)
            if self._logfile:
                self._logfile.write(f"{clock.now_iso()} {message}\n")
                self._logfile.flush()

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        """One daemon per org: an flock on `locks/daemon.lock` (released by the kernel if we die)."""
        self.paths.locks.mkdir(parents=True, exist_ok=True)
        fh = open(self.paths.locks / "daemon.lock", "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise DaemonError(f"a daemon already runs for org '{self.paths.tag}' (pid {pid})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lockfile = fh

    def run(self) -> None:
        """Run until stopped (SIGTERM/SIGINT via `stop`, or the org is marked stopped)."""
        self._take_lock()
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self._logfile = open(self.paths.logs / "daemon.log", "a", encoding="utf-8")  # noqa: SIM115
        # every folder a message can land in exists before we watch: no first message races a new watch
        for folder in (self.paths.runs, self.paths.comms / "status",
                       *(self.paths.comms / "inbox" / a for a in self.agents)):
            folder.mkdir(parents=True, exist_ok=True)
        observer = self._watch(polling=self.polling)
        self._gate_wake.set()  # a first gate step at once: baselines of a new org start without waiting
        gate = threading.Thread(target=self._gate_loop, name="gate", daemon=True)
        gate.start()
        self.log(f"daemon for org {self.paths.tag} (pid {os.getpid()}, {'polling' if self.polling else 'inotify'}"
                 f", {len(self.agents)} agents)")
        try:
            self._loop()
        finally:
            self.stop.set()
            self._gate_wake.set()
            observer.stop()
            observer.join(timeout=5)
            self.pool.shutdown(wait=True, cancel_futures=True)
            gate.join(timeout=30)
            self.log("daemon stopped")
            self._logfile.close()
            if self._lockfile:
                self._lockfile.close()

    def _watch(self, *, polling: bool) -> Any:
        """Start watching comms/ and runs/: inotify, or polling when asked or when inotify is out of watches."""
        observer = PollingObserver(timeout=0.5) if polling else Observer()
        handler = _Events(self._notice)
        observer.schedule(handler, str(self.paths.comms), recursive=True)
        observer.schedule(handler, str(self.paths.runs), recursive=True)
        try:
            observer.start()
        except OSError as exc:
            if polling:
                raise DaemonError(f"cannot watch {self.paths.comms}: {exc}") from None
            self.log(f"inotify failed ({exc}); polling instead (raise fs.inotify.max_user_watches to avoid this)")
            self.polling = True
            return self._watch(polling=True)
        return observer

    def _loop(self) -> None:
        next_panes = next_sweep = 0.0
        while not self.stop.is_set():
            try:
                first = self.dirty.get(timeout=0.2)
            except queue.Empty:
                first = None
            agents = set()
            if first is not None:
                agents.add(first)
                with contextlib.suppress(queue.Empty):
                    while True:
                        agents.add(self.dirty.get_nowait())
            now = time.monotonic()
            try:
                if now >= next_panes:
                    next_panes = now + PANES_EVERY_S
                    if self._org_stopped():
                        self.log(f"org {self.paths.tag} is stopped; exiting")
                        return
                    self.watch_agents()
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY_S
                    for agent in self.agents:
                        self.schedule(agent)
                    self.run_standups()
                for agent in agents:
                    self.schedule(agent)
            except AutoorgError as exc:
                self.log(f"error: {exc}")
            except Exception:  # the daemon must outlive a bug in one step; the log keeps the traceback
                self.log(f"unexpected error (kept running):\n{traceback.format_exc()}")

    def _org_stopped(self) -> bool:
        return org_status_word(self.paths) == "stopped"

    def _notice(self, path_text: str) -> None:
        """Route one changed path: an inbox or status file marks its agent dirty; a result wakes the gate."""
        path = Path(path_text)
        if path.name.startswith("."):
            return
        try:
            rel = path.relative_to(self.paths.comms).parts
        except ValueError:
            if path.name == "result.json":
                self._gate_wake.set()
            return
        if len(rel) == 3 and rel[0] == "inbox" and rel[2].endswith(".md"):
            self.dirty.put(rel[1])
        elif len(rel) == 2 and rel[0] == "status" and rel[1].endswith(".json"):
            self.dirty.put(rel[1][:-5])

    # -- delivery -----------------------------------------------------------------------------------------------

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
        timer = threading.Timer(delay + 0.01, self.dirty.put, args=(agent,))
        timer.daemon = True
        timer.start()
        self.log(f"{agent}: {why}; retrying in {delay:.1f}s")

    # -- agents: liveness and restarts --------------------------------------------------------------------------

    def watch_agents(self) -> None:
        """Look at every agent through the session and handle dead ones."""
        live = self.session.liveness()
        if live is None:
            self.pids = {}
            return
        seen = {agent: live[agent] for agent in self.agents if agent in live}
        self.pids = {agent: s.pid for agent, s in seen.items()}
        now = time.monotonic()
        for agent, state in seen.items():
            if state.dead:
                self._dead(agent, state)
            elif self.restarts.get(agent) and now - self.restarts[agent][-1] > STABLE_AFTER_S:
                self.restarts.pop(agent)  # stable again: a later crash starts a fresh count

    def _dead(self, agent: str, pane_state: Liveness) -> None:
        status = comms.read_status(self.paths, agent) or {}
        if status.get("state") in comms.HELD_STATES:
            return  # a person drives this pane; they decide
        code, signal = pane_state.exit_status, pane_state.exit_signal
        now = time.monotonic()
        if not code and not signal:
            # tmux may mark the pane dead before it has the exit status, and tmux 3.3 sometimes never reports
            # it for a respawned pane: wait a little, then call it a crash of unknown cause
            first = self.dead_since.setdefault(agent, now)
            if now - first < 3.0:
                return
        self.dead_since.pop(agent, None)
        if code:
            exited = f"exited with status {code}"
        else:
            unknown = "was killed (no exit status)" if self.headless else "exited (tmux reported no status)"
            exited = f"was killed by signal {signal}" if signal else unknown
        due = self.restart_due.get(agent)
        if due is not None:
            if now >= due:
                self.restart_due.pop(agent)
                self._restart(agent, exited)
            return
        if code == "0":
            if status.get("state") != "stopped":
                comms.write_status(self.paths, agent, "stopped", f"{exited}; not restarted")
                self.log(f"{agent}: {exited}; left stopped")
            return
        tries = len(self.restarts.get(agent, []))
        if tries >= self.restart_limit:
            detail = f"{exited}; gave up after {tries} restarts (see its pane)"
            if status.get("state") != "crashed" or status.get("detail") != detail:
                comms.write_status(self.paths, agent, "crashed", detail)
                self.log(f"{agent}: {detail}")
            return
        delay = self.restart_backoff * 2 ** tries
        comms.write_status(self.paths, agent, "crashed",
                           f"{exited}; restart {tries + 1}/{self.restart_limit} in {delay:.1f}s")
        self.log(f"{agent}: {exited}; restarting in {delay:.1f}s ({tries + 1}/{self.restart_limit})")
        self.restart_due[agent] = now + delay

    def _restart(self, agent: str, exited: str) -> None:
        env = pane_environment(self.paths, self.spec.agent(agent), self.socket)
        self.restarts.setdefault(agent, []).append(time.monotonic())
        n = len(self.restarts[agent])
        comms.write_status(self.paths, agent, "starting", f"restarted ({n}/{self.restart_limit}) after it {exited}")
        self.session.respawn(agent, env)
        self.log(f"{agent}: restarted ({n}/{self.restart_limit})")

    # -- standups -----------------------------------------------------------------------------------------------

    def run_standups(self) -> None:
        """Request standup notes every `processes.standup.every`; digest them to the chief, or the board."""
        every = self.standup_every
        if every is None:
            return
        state_path = self.paths.home / "daemon" / "standup.json"
        state = _read_json(state_path) or {}
        now = datetime.now(UTC)
        if "next_due" not in state:
            state["next_due"] = _iso(now + timedelta(seconds=every))
            atomic_write_text(state_path, json.dumps(state))
            return
        open_round = state.get("open")
        if open_round:
            notes = {a: comms.standup_notes_since(self.paths, a, open_round["since"]) for a in open_round["agents"]}
            if all(notes.values()) or now >= clock.parse_iso(open_round["close_at"]):
                self._digest(open_round["since"], notes)
                state["open"] = None
                atomic_write_text(state_path, json.dumps(state))
        if now >= clock.parse_iso(state["next_due"]) and not state.get("open"):
            asked = [a for a in self.agents
                     if (comms.read_status(self.paths, a) or {}).get("state") not in ("stopped", "crashed")]
            since = clock.now_iso()
            for agent in asked:
                comms.send_message(self.paths, sender="autoorg", to=agent, kind="standup", body=STANDUP_REQUEST)
            state["open"] = {"since": since, "agents": asked,
                             "close_at": _iso(now + timedelta(seconds=min(every / 2, 600)))}
            state["next_due"] = _iso(now + timedelta(seconds=every))
            atomic_write_text(state_path, json.dumps(state))
            self.log(f"standup requested from {len(asked)} agents")

    def _digest(self, since: str, notes: dict[str, str | None]) -> None:
        lines = [f"Standup digest ({since[:16].replace('T', ' ')} UTC)", ""]
        for agent, note in notes.items():
            lines += [f"### {agent}", note or "(no note)", ""]
        digest = "\n".join(lines).strip()
        chiefs = comms.roster(self.paths).with_role("chief")
        if chiefs:
            comms.send_message(self.paths, sender="autoorg", to="chief", kind="standup", body=digest)
            self.log(f"standup digest sent to {', '.join(chiefs)}")
        else:
            comms.update_board(self.paths, "Standup", digest)
            self.log("standup digest posted to the board")

    # -- the verification gate ----------------------------------------------------------------------------------

    def _gate_loop(self) -> None:
        """The gate's own thread: `gate.step` when a result lands and every GATE_EVERY_S, one call at a time; while
        a step reports it did something, step again (bounded) so a verification moves on without waiting."""
        last_error = ""
        while not self.stop.is_set():
            self._gate_wake.wait(timeout=GATE_EVERY_S)
            self._gate_wake.clear()
            if self.stop.is_set():
                return
            try:
                for _ in range(GATE_STEPS_PER_WAKE):
                    if self.stop.is_set() or not gate.step(self.paths, log=lambda line: self.log(f"gate: {line}")):
                        break
                last_error = ""
            except AutoorgError as exc:
                if str(exc) != last_error:  # the same complaint every 10 s helps no one
                    self.log(f"gate: {exc}")
                last_error = str(exc)
            except Exception:
                self.log(f"gate: unexpected error (kept running):\n{traceback.format_exc()}")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
