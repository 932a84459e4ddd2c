"""The headless `Session`: every agent (and the daemon) a plain detached process, no tmux server at all.

Each process is `bash -c COMMAND`, started from its working directory in its own process group, with the
environment a pane would get. Under `<home>/runtime/`:
- `<name>.in`: a FIFO that is the agent's stdin, opened read-write by the agent so a writer never blocks and the
  agent never sees end-of-file; a line written to it is input given;
- `<name>.log`: its stdout and stderr, appended;
- `<name>.exit`: its exit status, written by the wrapping shell when the command returns;
- `<name>.launch.json`: how it was started (cwd, command, env), so a respawn starts it the same way;
- `<name>.sent`: the lines given to it, so a daemon restarted mid-doorbell knows whether one was given.
Pid and start time go to state.json; liveness comes from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from autoorg.environment import without_secrets
from autoorg.errors import StateError
from autoorg.paths import OrgPaths, atomic_write_text
from autoorg.runtime.session import Launch, LineFate, Liveness
from autoorg.state import OrgState, ProcessRecord, read_state, update_state

STOP_GRACE_S = 5.0  # SIGTERM, then this long before SIGKILL
NOT_INHERITED = ("TMUX", "TMUX_PANE")  # a headless agent is in no tmux, whatever the shell that started it


def runtime_dir(paths: OrgPaths) -> Path:
    return paths.home / "runtime"


def log_path(paths: OrgPaths, name: str) -> Path:
    return runtime_dir(paths) / f"{name}.log"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when there is no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    if fields is None:
        raise StateError(f"process {pid} vanished as it started")
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """The very process recorded (not a later one given the same pid) runs and is not a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(record.pid, os.WNOHANG)  # reap it if it is our child (the daemon's respawns are)
    fields = _stat_fields(record.pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == record.start


def kill_groups(records: list[ProcessRecord], grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM each process's group, SIGKILL the groups after grace_s (at once when all have exited); whether any
    of the processes was alive."""
    alive = [r for r in records if is_alive(r)]
    for record in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(is_alive(r) for r in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for record in records:  # also whatever they left behind in their groups
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    return bool(alive)


class HeadlessSession:
    """An org's agents and daemon as detached processes, recorded in its state."""

    def __init__(self, paths: OrgPaths, state: OrgState) -> None:
        self.paths = paths
        self.state = state
        self.folder = runtime_dir(paths)

    def _file(self, name: str, suffix: str) -> Path:
        return self.folder / f"{name}{suffix}"

    def _record(self, name: str) -> ProcessRecord | None:
        if name in self.state.agents:
            return self.state.agents[name].process
        return self.state.service_processes.get(name)

    def _set_record(self, state: OrgState, name: str, record: ProcessRecord) -> None:
        if name in state.agents:
            state.agents[name].process = record
        else:
            state.service_processes[name] = record

    # -- starting -------------------------------------------------------------------------------------------------

    def start(self, agents: list[Launch], *, cwd: str, env: dict[str, str], daemon_command: str,
              dash_command: str) -> None:
        """Agents first, then the daemon (no dashboard: nothing to show it on). What started is stopped again
        when a later start fails."""
        self.folder.mkdir(parents=True, exist_ok=True)
        started: list[ProcessRecord] = []
        try:
            for launch in [*agents, Launch("daemon", cwd, daemon_command, {})]:
                launch.env = {**env, **launch.env}
                atomic_write_text(self._file(launch.name, ".launch.json"), json.dumps(
                    {"cwd": launch.cwd, "command": launch.command, "env": launch.env}) + "\n")
                started.append(self._spawn(launch, stdin_fifo=launch.name != "daemon"))
                self._set_record(self.state, launch.name, started[-1])
        except BaseException:
            kill_groups(started, grace_s=0)
            raise

    def _spawn(self, launch: Launch, *, stdin_fifo: bool) -> ProcessRecord:
        fifo = self._file(launch.name, ".in")
        exit_file = self._file(launch.name, ".exit")
        exit_file.unlink(missing_ok=True)
        if stdin_fifo:
            if not fifo.exists():
                os.mkfifo(fifo, 0o600)
            stdin = os.open(fifo, os.O_RDWR)  # read-write: opening never blocks, and no EOF when writers go
        else:
            stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(self._file(launch.name, ".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        env = {k: v for k, v in without_secrets(os.environ).items() if k not in NOT_INHERITED}
        env.update(launch.env)  # an agent's key comes from its env file, which its command sources
        script = f"{launch.command}\nprintf '%s\\n' \"$?\" > {shlex.quote(str(exit_file))}"
        try:
            proc = subprocess.Popen(["bash", "-c", script], cwd=launch.cwd, env=env, stdin=stdin, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise StateError(f"cannot start {launch.name} in {launch.cwd}: {exc}") from None
        finally:
            os.close(stdin)
            os.close(out)
        return ProcessRecord(pid=proc.pid, start=start_ticks(proc.pid))

    def respawn(self, name: str, env: dict[str, str]) -> None:
        """Kill what is left of its process group, start it again as it was first started, record the new pid."""
        try:
            launch = json.loads(self._file(name, ".launch.json").read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot restart {name}: no launch record ({exc})") from None
        old = self._record(name)
        if old is not None:
            kill_groups([old], grace_s=0)
        record = self._spawn(Launch(name, launch["cwd"], launch["command"], {**launch["env"], **env}),
                             stdin_fifo=name != "daemon")
        self._set_record(self.state, name, record)
        update_state(self.paths, lambda now: self._set_record(now, name, record))

    # -- looking and talking ----------------------------------------------------------------------------------------

    def running(self) -> bool:
        names = [*self.state.agents, *self.state.service_processes]
        return any(r is not None and is_alive(r) for r in map(self._record, names))

    def liveness(self) -> dict[str, Liveness] | None:
        found = {}
        for name in [*self.state.agents, *self.state.service_processes]:
            record = self._record(name)
            if record is None:
                continue
            if is_alive(record):
                found[name] = Liveness(dead=False, pid=str(record.pid))
                continue
            try:
                status = self._file(name, ".exit").read_text().strip()
            except OSError:
                status = ""  # killed before its shell could say
            found[name] = Liveness(dead=True, exit_status=status, pid=str(record.pid))
        return found if found else None

    def send_line(self, agent: str, text: str) -> bool:
        """Write one line to the agent's FIFO: one write below PIPE_BUF, so it arrives whole or not at all."""
        record = self._record(agent)
        if record is None or not is_alive(record):
            return False
        data = (text.rstrip().replace("\n", " ") + "\n").encode()
        try:
            fd = os.open(self._file(agent, ".in"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader: the agent is gone
            return False
        try:
            if os.write(fd, data) != len(data):
                return False
        except OSError:  # the pipe is full: the agent is not reading
            return False
        finally:
            os.close(fd)
        with open(self._file(agent, ".sent"), "a", encoding="utf-8") as fh:
            fh.write(data.decode())
        return True

    def settle_line(self, agent: str, text: str) -> LineFate:
        record = self._record(agent)
        if record is None or not is_alive(record):
            return "blocked"
        try:
            sent = self._file(agent, ".sent").read_text(encoding="utf-8").splitlines()[-5000:]
        except OSError:
            sent = []
        return "taken" if text.rstrip() in sent else "absent"

    def recent_output(self, agent: str, lines: int = 200) -> list[str]:
        try:
            return self._file(agent, ".log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def show_message(self, text: str) -> None:
        """No terminal to show it on: the daemon's log and the dashboard say it."""

    def stop(self) -> bool:
        """The daemon first (so it restarts nothing meanwhile), then every agent as state.json now records it."""
        daemon_alive = kill_groups(list(self.state.service_processes.values()))
        with contextlib.suppress(StateError):  # the daemon may have respawned agents since we read the state
            self.state = read_state(self.paths)
        agents_alive = kill_groups([a.process for a in self.state.agents.values() if a.process is not None])
        return daemon_alive or agents_alive
