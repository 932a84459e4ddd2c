"""The org's daemon (`autoorg daemon`: in the session's `daemon` window, or a process of its own headless).

A core loop drives the daemon's processes, each a module of its own:
- `delivery`: rings an agent's doorbell when it turns idle with unread messages (through the org's `Session`);
- `agent_watch`: watches the agents, marks dead ones `crashed` and restarts them with backoff;
- `standups`: `processes: {standup: {every: 30m}}`, the digest to the chief (or the board);
- `notify`: says when an agent waits for input or crashes, or the org promotes (log, tmux message, webhook);
- `reload`: a prompt or skill edited in a running org reaches every agent as a `system` message with the diff;
- `rules`: `processes: {stop: [...]}`, stop rules read from the ledger: stop queuing, or pause the agents;
- `gate_worker`: the verification gate (`autoorg.gate.step`) in its own thread, when a result lands and every few
  seconds.
It watches `comms/` and the org folder itself, for results.tsv (watchdog: inotify, or polling), and routes each
change to the process it concerns.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from autoorg import clock
from autoorg.daemon.agent_watch import AgentWatch
from autoorg.daemon.delivery import Delivery
from autoorg.daemon.gate_worker import GateWorker
from autoorg.daemon.notify import Notifier
from autoorg.daemon.reload import OrgReload
from autoorg.daemon.rules import StopRules
from autoorg.daemon.standups import Standups
from autoorg.errors import AutoorgError, DaemonError, Say, StateError
from autoorg.paths import OrgPaths
from autoorg.runtime import Session, open_session
from autoorg.spec import load_org
from autoorg.state import org_status_word, read_state

STOPPED_EVERY_S = 1.0  # how often the loop checks that the org was not marked stopped


class Process(Protocol):
    """One of the daemon's jobs: the core loop calls `tick` every `every_s` seconds, and `close` once at the end."""

    every_s: float

    def tick(self) -> None: ...

    def close(self) -> None: ...


class _Events(FileSystemEventHandler):
    """Watchdog thread: only classify the path and queue it; all work happens in the daemon's own threads."""

    def __init__(self, notice: Callable[[str], None], ledger: Path) -> None:
        self.notice = notice
        self.ledger = str(ledger)  # ledger.sqlite and its -wal and -shm: a connection closing, nothing to route

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "moved", "closed"):
            return
        # our own writes are renames: the new name is dest_path
        path = os.fsdecode(event.dest_path if event.event_type == "moved" else event.src_path)
        if not path.startswith(self.ledger):
            self.notice(path)


class Daemon:
    """One org's daemon. `run()` blocks until `stop` is set (the CLI sets it on SIGTERM, SIGINT, SIGHUP) or the
    org is marked stopped. Threads: the watchdog observer (queues paths only), the core loop (ticks the processes),
    a pool delivering doorbells (one job per agent at a time) and the gate's own thread."""

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
        self.state = state
        self.session: Session = open_session(paths, state)
        self.out = out or (lambda line: print(line, flush=True))
        self.stop = threading.Event()
        self.dirty: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._log_lock = threading.Lock()
        self._logfile: TextIO | None = None
        self._lockfile: TextIO | None = None
        if not paths.org_yaml.is_file():
            raise DaemonError(f"no org at {paths.home} (no org.yaml); start one with `autoorg up`")
        self.spec = load_org(str(paths.org_yaml))
        self.agents = self.spec.names

    def _processes(self) -> tuple[Delivery, GateWorker, list[Process]]:
        """The daemon's processes, in the order each loop turn ticks them: agents are looked at before delivery."""
        delivery = Delivery(self.paths, self.session, self.agents, log=self.log, poke=self.dirty.put, stop=self.stop)
        watch = AgentWatch(self.paths, self.spec, self.session, socket=self.state.socket,
                           headless=self.state.headless, log=self.log,
                           seen=lambda pids: setattr(delivery, "pids", pids), gone=self.stop.set)
        gate = GateWorker(self.paths, log=self.log, stop=self.stop)
        # right after the watch: a crash it marks is seen in the same turn, before a restart replaces it
        notifier = Notifier(self.paths, self.spec, self.session, log=self.log)
        processes: list[Process] = [watch, notifier, delivery, OrgReload(self.paths, self.spec, log=self.log)]
        every = self.spec.processes.standup.every
        if every is not None:
            processes.append(Standups(self.paths, self.agents, every, log=self.log))
        if self.spec.processes.stop:
            processes.append(StopRules(self.paths, self.spec, log=self.log))
        return delivery, gate, [*processes, gate]

    # -- logging ------------------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        line = f"{datetime.now(UTC).strftime('%H:%M:%S')} {message}"
        with self._log_lock:
            if self._logfile:  # first: the log keeps the line when the window is gone (its pty closed: EIO)
                self._logfile.write(f"{clock.now_iso()} {message}\n")
                self._logfile.flush()
            with contextlib.suppress(OSError):
                self.out(line)

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
        delivery, gate, processes = self._processes()
        observer = self._watch(polling=self.polling, delivery=delivery, gate=gate)
        self.log(f"daemon for org {self.paths.tag} (pid {os.getpid()}, {'polling' if self.polling else 'inotify'}"
                 f", {len(self.agents)} agents)")
        try:
            self._loop(delivery, processes)
        finally:
            self.stop.set()
            observer.stop()
            observer.join(timeout=5)
            for process in processes:
                process.close()
            self.log("daemon stopped")
            self._logfile.close()
            if self._lockfile:
                self._lockfile.close()

    def _watch(self, *, polling: bool, delivery: Delivery, gate: GateWorker) -> Any:
        """Start watching comms/ and the org's folder itself (not runs/: every run holds a copy of the source, and
        its watches would grow with each run): inotify, or polling when asked or when inotify is out of watches."""
        observer = PollingObserver(timeout=0.5) if polling else Observer()
        handler = _Events(lambda path: self._notice(path, gate), self.paths.ledger)
        # only the kinds _Events routes: inotify then leaves out the ledger's reads and writes (every connection
        # of every worker opens, writes and closes ledger.sqlite and its -wal and -shm: ~1,500 events a second)
        kinds: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent, FileClosedEvent]
        observer.schedule(handler, str(self.paths.comms), recursive=True, event_filter=kinds)
        observer.schedule(handler, str(self.paths.home), recursive=False, event_filter=kinds)
        try:
            observer.start()
        except OSError as exc:
            if polling:
                raise DaemonError(f"cannot watch {self.paths.comms}: {exc}") from None
            self.log(f"inotify failed ({exc}); polling instead (raise fs.inotify.max_user_watches to avoid this)")
            self.polling = True
            return self._watch(polling=True, delivery=delivery, gate=gate)
        return observer

    def _loop(self, delivery: Delivery, processes: list[Process]) -> None:
        due = dict.fromkeys(range(len(processes)), 0.0)
        next_check = 0.0
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
            for agent in agents:  # first: a message waits for no periodic work
                self._guarded(functools.partial(delivery.schedule, agent))
            now = time.monotonic()
            if now >= next_check:
                next_check = now + STOPPED_EVERY_S
                if self._org_stopped():
                    self.log(f"org {self.paths.tag} is stopped; exiting")
                    return
            for i, process in enumerate(processes):
                if now >= due[i]:
                    due[i] = now + process.every_s
                    self._guarded(process.tick)

    def _guarded(self, step: Callable[[], None]) -> None:
        """The daemon must outlive a bug in one step; the log keeps the traceback."""
        try:
            step()
        except AutoorgError as exc:
            self.log(f"error: {exc}")
        except Exception:
            self.log(f"unexpected error (kept running):\n{traceback.format_exc()}")

    def _org_stopped(self) -> bool:
        return org_status_word(self.paths) in ("stopping", "stopped")

    def _notice(self, path_text: str, gate: GateWorker) -> None:
        """Route one changed path: an inbox or status file marks its agent dirty; a result wakes the gate (the
        ledger rewrites results.tsv whenever it records one)."""
        path = Path(path_text)
        if path.name.startswith("."):
            return
        if path == self.paths.results_tsv:
            gate.wake()
            return
        try:
            rel = path.relative_to(self.paths.comms).parts
        except ValueError:
            return
        if len(rel) == 3 and rel[0] == "inbox" and rel[2].endswith(".md"):
            self.dirty.put(rel[1])
        elif len(rel) == 2 and rel[0] == "status" and rel[1].endswith(".json"):
            self.dirty.put(rel[1][:-5])
