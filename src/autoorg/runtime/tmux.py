"""The one place that talks to tmux (through libtmux): the org's session, its tiled grid, panes by id (%N)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import libtmux
from libtmux.exc import LibTmuxException

from autoorg.environment import is_secret, without_secrets
from autoorg.errors import TmuxError

PANES_PER_WINDOW = 8
SESSION_SIZE = (240, 64)  # columns, rows: a real size so 8 tiled panes each get a usable terminal


@dataclass
class PaneSpec:
    """One pane to create: a title (the agent name), a working directory, a command and its environment."""

    title: str
    cwd: str
    command: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class SessionLayout:
    session: str
    session_id: str
    windows: dict[str, str]  # window name -> @id
    panes: dict[str, str]  # pane title (agent) -> %id
    services: dict[str, str] = field(default_factory=dict)  # dash, daemon -> %id


def session_name(tag: str) -> str:
    return f"autoorg-{tag}"


def _server(socket: str | None) -> libtmux.Server:
    if shutil.which("tmux") is None:
        raise TmuxError("tmux not found on PATH; install tmux (apt-get install tmux)")
    if socket and "/" in socket:  # a socket path: the server `up` found itself inside
        return libtmux.Server(socket_path=socket)
    return libtmux.Server(socket_name=socket) if socket else libtmux.Server()


def _socket_args(socket: str | None) -> list[str]:
    if not socket:
        return []
    return ["-S", socket] if "/" in socket else ["-L", socket]


def current_socket(socket: str | None) -> str | None:
    """The server an org started now would live on: --socket, else the tmux we are inside (by its socket path,
    so commands run later from outside it still find the org), else the default server."""
    if socket:
        return socket
    inside = os.environ.get("TMUX", "").split(",")[0]
    return inside or None


def _cmd(server: libtmux.Server, *args: str) -> list[str]:
    """Run one tmux command; a failure becomes a TmuxError with tmux's message."""
    try:
        result = server.cmd(*args)
    except LibTmuxException as exc:
        raise TmuxError(f"tmux {args[0]} failed: {exc}") from None
    if result.stderr:
        raise TmuxError(f"tmux {args[0]} failed: {' '.join(result.stderr).strip()}")
    return list(result.stdout)


def _cmd_without_secrets(socket: str | None, argv: list[str]) -> list[str]:
    """One tmux command from a client whose environment has no credentials: a server it starts keeps none in its
    global environment, so no shell of the org's session is born with a key."""
    proc = subprocess.run(["tmux", *_socket_args(socket), *argv], capture_output=True, text=True,
                          env=without_secrets(os.environ), check=False)
    if proc.returncode or proc.stderr.strip():
        raise TmuxError(f"tmux {argv[0]} failed: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout.splitlines()


def has_session(socket: str | None, name: str) -> bool:
    server = _server(socket)
    try:
        return bool(server.has_session(name))
    except LibTmuxException:
        return False


def _pane_command(command: str, env: dict[str, str], secrets: list[str]) -> str:
    """The shell line a pane runs. tmux gives a new pane the PATH of the client that asked for it, ignoring
    `-e PATH=…`: it is set in the shell. The server's global environment (the caller's, when `up` started the
    server) may hold keys: they are unset, so only an agent that sources its env file has one."""
    prefix = f"unset {' '.join(secrets)}; " if secrets else ""
    if "PATH" in env:
        prefix += f"export PATH={shlex.quote(env['PATH'])}; "
    return prefix + command


def _secret_names(server: libtmux.Server) -> list[str]:
    """Credentials a new pane would inherit: from the server's global environment, or ours when we start it."""
    names = set(os.environ)
    with contextlib.suppress(LibTmuxException):
        if server.is_alive():
            names |= {line.lstrip("-").split("=", 1)[0] for line in server.cmd("show-environment", "-g").stdout}
    return sorted(n for n in names if is_secret(n) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n))


def _env_flags(env: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]
    return flags


def create_org_session(socket: str | None, name: str, *, cwd: str, env: dict[str, str],
                       agents: list[PaneSpec], dash_command: str, daemon_command: str | None) -> SessionLayout:
    """Session `name` with a `dash` window, `org` windows of at most 8 tiled agent panes, and a `daemon` window.

    Each window is one chained tmux command, so `remain-on-exit` is set before any agent can exit (a crash stays
    visible, and is detected as a dead pane) and a window of 8 agents costs one tmux call, not dozens.
    """
    server = _server(socket)
    if has_session(socket, name):
        raise TmuxError(f"tmux session '{name}' already exists")
    fmt = "#{window_name} #{window_id} #{pane_id}"
    secrets = _secret_names(server)
    calls: list[list[str]] = [["new-session", "-d", "-s", name, "-n", "dash", "-x", str(SESSION_SIZE[0]),
                               "-y", str(SESSION_SIZE[1]), "-c", cwd, *_env_flags(env), "-P", "-F", fmt,
                               _pane_command(dash_command, env, secrets)]]
    titles: list[str] = ["dash"]
    windows_wanted = []
    for start in range(0, len(agents), PANES_PER_WINDOW):
        windows_wanted.append(("org" if start == 0 else f"org-{start // PANES_PER_WINDOW + 1}",
                               agents[start:start + PANES_PER_WINDOW]))
    if daemon_command:
        windows_wanted.append(("daemon", [PaneSpec("daemon", cwd, daemon_command)]))
    for wname, group in windows_wanted:
        target = f"{name}:{wname}"
        first = group[0]
        argv = ["new-window", "-d", "-t", f"{name}:", "-n", wname, "-c", first.cwd,
                *_env_flags({**env, **first.env}), "-P", "-F", fmt,
                _pane_command(first.command, {**env, **first.env}, secrets)]
        # window-size manual: the window keeps SESSION_SIZE whoever attaches, so an 80x24 client does not shrink
        # what the agents see (tmux's default, `latest`, resizes to the last client and keeps that size after it
        # detaches); the dash window follows the client instead
        for option, value in (("remain-on-exit", "on"), ("pane-border-status", "top"), ("automatic-rename", "off"),
                              ("window-size", "manual"),
                              ("pane-border-format",
                               " #{?@autoorg_agent,#{@autoorg_agent},#{pane_title}}#{?pane_dead, [exited],} ")):
            argv += [";", "set-option", "-w", "-t", target, option, value]
        titles.append(first.title)
        for spec in group[1:]:
            # no -d: the new pane becomes active and the next split divides it, so panes keep creation order
            argv += [";", "split-window", "-t", target, "-c", spec.cwd, *_env_flags({**env, **spec.env}),
                     "-P", "-F", fmt, _pane_command(spec.command, {**env, **spec.env}, secrets),
                     ";", "select-layout", "-t", target, "tiled"]
            titles.append(spec.title)
        calls.append(argv)
    windows: dict[str, str] = {}
    pane_ids: list[str] = []
    try:
        for i, argv in enumerate(calls):
            for line in (_cmd_without_secrets(socket, argv) if i == 0 else _cmd(server, *argv)):
                wname, window_id, pane_id = line.split()
                windows.setdefault(wname, window_id)
                pane_ids.append(pane_id)
        panes = dict(zip(titles, pane_ids, strict=True))
        services: dict[str, str] = {t: panes.pop(t) for t in ("dash", "daemon") if t in panes}  # not agents
        style: list[str] = ["select-window", "-t", windows["org"]]
        for title, pane_id in panes.items():
            style += [";", "set-option", "-p", "-t", pane_id, "@autoorg_agent", title,
                      ";", "select-pane", "-t", pane_id, "-T", title]
        _cmd(server, *style)
        session_id = _cmd(server, "display-message", "-p", "-t", name, "#{session_id}")[0]
    except (TmuxError, ValueError) as exc:
        kill_session(socket, name)
        raise TmuxError(f"cannot build tmux session '{name}': {exc}") from None
    return SessionLayout(session=name, session_id=session_id, windows=windows, panes=panes, services=services)


def kill_session(socket: str | None, name: str) -> bool:
    """Kill the session if it exists; returns whether it did."""
    server = _server(socket)
    if not has_session(socket, name):
        return False
    try:
        server.kill_session(name)
    except LibTmuxException:
        return False
    return True


def pane_info(socket: str | None, pane_id: str) -> dict[str, str] | None:
    """Live facts about a pane, or None when it no longer exists."""
    server = _server(socket)
    fmt = "#{pane_dead}\t#{pane_pid}\t#{pane_current_path}\t#{pane_current_command}\t#{pane_dead_status}"
    try:
        result = server.cmd("display-message", "-p", "-t", pane_id, fmt)
    except LibTmuxException:
        return None
    if result.stderr or not result.stdout:
        return None
    dead, pid, path, command, status = (result.stdout[0].split("\t") + [""] * 5)[:5]
    return {"dead": dead, "pid": pid, "path": path, "command": command, "exit_status": status}


def pane_option(socket: str | None, pane_id: str, option: str) -> str | None:
    """A pane's user option (such as @autoorg_agent), or None when unset or the pane is gone."""
    try:
        result = _server(socket).cmd("show-options", "-p", "-v", "-t", pane_id, option)
    except LibTmuxException:
        return None
    return result.stdout[0] if result.stdout and not result.stderr else None


def pane_alive(socket: str | None, pane_id: str) -> bool:
    info = pane_info(socket, pane_id)
    return info is not None and info["dead"] != "1"


def capture(socket: str | None, pane_id: str, lines: int = 200) -> list[str]:
    server = _server(socket)
    try:
        result = server.cmd("capture-pane", "-p", "-J", "-t", pane_id, "-S", f"-{lines}")
    except LibTmuxException as exc:
        raise TmuxError(f"cannot capture pane {pane_id}: {exc}") from None
    if result.stderr:
        raise TmuxError(f"cannot capture pane {pane_id}: {' '.join(result.stderr)}")
    return list(result.stdout)


def send_text(socket: str | None, pane_id: str, text: str) -> None:
    """Type text literally into a pane (no Enter)."""
    _cmd(_server(socket), "send-keys", "-t", pane_id, "-l", text)


def send_enter(socket: str | None, pane_id: str) -> None:
    _cmd(_server(socket), "send-keys", "-t", pane_id, "Enter")


def send_and_confirm(socket: str | None, pane_id: str, text: str, *, attempts: int = 4,
                     settle_s: float = 0.05) -> bool:
    """Type one line of text, then Enter as a separate key, then confirm from the pane that the input was taken.

    Nothing is typed into a dead pane or one in copy mode (keys would drive the mode, not the program). Returns
    whether the input was confirmed (see `enter_and_confirm`).
    """
    text = text.rstrip()
    view = input_view(socket, pane_id)
    if view is None or view.dead or view.in_mode:
        return False
    send_text(socket, pane_id, text)
    time.sleep(settle_s)
    typed = input_view(socket, pane_id)
    if typed is None:
        return False
    return enter_and_confirm(socket, pane_id, text, typed, attempts=attempts, settle_s=settle_s)


def enter_and_confirm(socket: str | None, pane_id: str, text: str, typed: InputView, *, attempts: int = 4,
                      settle_s: float = 0.05) -> bool:
    """Press Enter after typed text and confirm it was taken: the screen changed and the text no longer sits just
    before the cursor. A dropped Enter is re-sent with backoff; the first wait is long enough that a busy
    program is rarely sent a second, empty Enter."""
    wait = max(settle_s * 6, 0.3)
    for _ in range(attempts):
        send_enter(socket, pane_id)
        deadline = time.monotonic() + wait
        while True:
            time.sleep(0.025)  # each look is a tmux call: poll gently
            now = input_view(socket, pane_id)
            if now is None or now.dead:
                return False
            if now != typed and not now.unsent(text):
                return True
            if time.monotonic() > deadline:
                break
        wait *= 2
    return False


def attach(socket: str | None, target: str) -> bool:
    """Attach this terminal to target (session, window or pane); inside the same tmux, switch the client instead.

    Inside a different tmux server (the org runs on a private socket) the org's session is nested in this pane:
    TMUX is dropped for the child, which is how tmux asks to be told that nesting is intended. Returns False
    only when switching was impossible (no client to switch); attaching replaces this process.
    """
    server = _server(socket)
    base = ["tmux", *_socket_args(socket)]
    if os.environ.get("TMUX") and _same_server(server):
        return not server.cmd("switch-client", "-t", target).stderr
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    os.execvpe("tmux", [*base, "attach-session", "-t", target], env)


def select_pane(socket: str | None, pane_id: str) -> None:
    server = _server(socket)
    _cmd(server, "select-window", "-t", pane_id)
    _cmd(server, "select-pane", "-t", pane_id)


def _same_server(server: libtmux.Server) -> bool:
    """Is the tmux we are inside ($TMUX) the server we talk to?"""
    ours = os.environ.get("TMUX", "").split(",")[0]
    try:
        result = server.cmd("display-message", "-p", "#{socket_path}")
    except LibTmuxException:
        return False
    return bool(result.stdout) and result.stdout[0] == ours


def attach_hint(socket: str | None, target: str) -> str:
    flag = " ".join(_socket_args(socket)) + " " if socket else ""
    return f"tmux {flag}attach -t {target}"


@dataclass(frozen=True)
class InputView:
    """What decides whether typed input was taken: the visible screen, the cursor, and the pane's mode."""

    lines: tuple[str, ...]
    cursor_x: int
    cursor_y: int
    in_mode: bool
    dead: bool

    def unsent(self, text: str) -> bool:
        """Does text (its last characters) sit just before the cursor, typed but not yet entered?"""
        probe = text.rstrip()[-12:]
        if not probe or not 0 <= self.cursor_y < len(self.lines):
            return False
        before = self.lines[self.cursor_y][: self.cursor_x]
        if self.cursor_x < len(probe) and self.cursor_y > 0:  # the text wrapped onto this row
            before = self.lines[self.cursor_y - 1] + before
        return before.endswith(probe)


def input_view(socket: str | None, pane_id: str) -> InputView | None:
    """The pane's screen and cursor in one tmux call; None when the pane is gone."""
    fmt = "#{cursor_x} #{cursor_y} #{pane_in_mode} #{pane_dead}"
    try:
        result = _server(socket).cmd("display-message", "-p", "-t", pane_id, fmt, ";",
                                     "capture-pane", "-p", "-t", pane_id)
    except LibTmuxException:
        return None
    if result.stderr or not result.stdout:
        return None
    x, y, mode, dead = (result.stdout[0].split() + ["0"] * 4)[:4]
    return InputView(lines=tuple(result.stdout[1:]), cursor_x=int(x), cursor_y=int(y), in_mode=mode == "1",
                     dead=dead == "1")


@dataclass(frozen=True)
class PaneState:
    agent: str  # the pane's @autoorg_agent option ("" for dash and daemon panes)
    dead: bool
    exit_status: str  # the exit code; empty while alive, when killed by a signal, or not yet collected by tmux
    exit_signal: str = ""  # the signal number that killed it
    pid: str = ""  # the pane's process: a new one after a respawn


def pane_states(socket: str | None, session: str) -> dict[str, PaneState] | None:
    """Every pane of a session (%id -> state) in one call; None when the session is gone."""
    try:
        result = _server(socket).cmd("list-panes", "-s", "-t", f"={session}", "-F",
                                     "#{pane_id}\t#{@autoorg_agent}\t#{pane_dead}\t#{pane_dead_status}\t"
                                     "#{pane_dead_signal}\t#{pane_pid}")
    except LibTmuxException:
        return None
    if result.stderr:
        return None
    states = {}
    for line in result.stdout:
        pane_id, agent, dead, status, signal, pid = (line.split("\t") + [""] * 6)[:6]
        states[pane_id] = PaneState(agent=agent, dead=dead == "1", exit_status=status, exit_signal=signal, pid=pid)
    return states


def respawn_pane(socket: str | None, pane_id: str, env: dict[str, str]) -> None:
    """Run a pane's original command again, in its original directory, with env (a live one is killed first)."""
    _cmd(_server(socket), "respawn-pane", "-k", "-t", pane_id, *_env_flags(env))


def display_message(socket: str | None, session: str, text: str, *, seconds: float = 10.0) -> int:
    """Show text on the status line of every client attached to session (tmux also keeps it in `show-messages`);
    returns how many clients it was shown to."""
    server = _server(socket)
    clients = _cmd(server, "list-clients", "-t", session, "-F", "#{client_name}")
    for client in clients:
        _cmd(server, "display-message", "-c", client, "-d", str(int(seconds * 1000)), text)
    return len(clients)


POPUP_KEY = "D"


def bind_dash_popup(socket: str | None, session: str, command: str) -> None:
    """prefix + D runs command (`autoorg dash --popup`: the dashboard in a popup) in this session only: the
    command is the session's own option `@autoorg_dash` (key tables are server-wide; a session option is not), and
    in any other session the key keeps tmux's default, choose-client. run-shell, because display-popup does not
    expand formats."""
    server = _server(socket)
    _cmd(server, "set-option", "-t", session, "@autoorg_dash", command)
    _cmd(server, "bind-key", "-T", "prefix", POPUP_KEY, "if-shell", "-F", "#{@autoorg_dash}",
         "run-shell -b '#{@autoorg_dash}'", "choose-client -Z")


def popup(socket: str | None, command: str) -> None:
    """Run command in a tmux popup over the current client (closes when the command exits)."""
    _cmd(_server(socket), "display-popup", "-E", "-w", "90%", "-h", "80%", command)
