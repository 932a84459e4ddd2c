"""The Textual dashboard: each agent's state, slots, branch and loss; the program head; the latest results."""

from __future__ import annotations

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from autoorg.dash.data import Snapshot, take_snapshot
from autoorg.errors import AutoorgError
from autoorg.paths import OrgPaths
from autoorg.runtime import tmux

AGENT_COLUMNS = ("agent", "role", "backend", "slots", "state", "branch", "head", "exp", "loss", "step", "last")
RESULT_COLUMNS = ("exp", "kind", "agent", "metric", "delta", "verdict", "description")
STATE_STYLE = {"working": "green", "running": "bold green", "idle": "yellow", "waiting": "bold magenta",
               "human": "bold cyan", "crashed": "bold red", "stopped": "dim", "paused": "dim", "starting": "blue"}


class DashApp(App[None]):
    """`autoorg dash`: refreshes every few seconds; Enter on an agent jumps to its pane."""

    TITLE = "autoorg"
    CSS = """
    #summary { height: 3; padding: 0 1; background: $boost; }
    #agents { height: auto; max-height: 60%; }
    #results-title { height: 1; padding: 0 1; background: $boost; }
    #results { height: 1fr; }
    """
    BINDINGS = [
        Binding("enter", "goto_pane", "Go to pane", priority=True),
        Binding("r", "refresh_now", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, paths: OrgPaths, *, socket: str | None = None, refresh_s: float = 2.0) -> None:
        super().__init__()
        self.paths = paths
        self.socket = socket
        self.refresh_s = refresh_s
        self.snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="summary")
        yield DataTable(id="agents", cursor_type="row", zebra_stripes=True)
        yield Static("latest results", id="results-title")
        yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#agents", DataTable).add_columns(*AGENT_COLUMNS)
        self.query_one("#results", DataTable).add_columns(*RESULT_COLUMNS)
        self.action_refresh_now()
        self.set_interval(self.refresh_s, self.action_refresh_now)

    def action_refresh_now(self) -> None:
        self.gather()

    @work(thread=True, exclusive=True)
    def gather(self) -> None:
        """Read the org off the UI thread (git, tmux and SQLite calls), then draw on it."""
        try:
            snap = take_snapshot(self.paths)
        except AutoorgError as exc:
            self.call_from_thread(self.show_error, str(exc))
            return
        self.call_from_thread(self.draw, snap)

    def show_error(self, message: str) -> None:
        self.query_one("#summary", Static).update(f"[bold red]{message}[/]")

    def draw(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.sub_title = f"{snap.tag} · {'running' if snap.running else 'stopped'}"
        self.query_one("#summary", Static).update(
            f"[b]{snap.program_branch}[/] @ {snap.program_head}   {snap.metric} {snap.arrow}  "
            f"best [b]{snap.best or '—'}[/]   {snap.promotions} promotion(s)   {snap.experiments} experiment(s)\n"
            f"{len(snap.agents)} agents: "
            + ", ".join(f"{n} {s}" for s, n in _count_states(snap).items()))
        agents = self.query_one("#agents", DataTable)
        cursor = agents.cursor_row
        agents.clear()
        for a in snap.agents:
            style = STATE_STYLE.get(a.state, "")
            state = f"[{style}]{a.state}[/]" if style else a.state
            agents.add_row(a.name, a.role, a.backend, a.slots, state, a.branch, a.head, a.exp, a.loss, a.step,
                           a.last, key=a.name)
        if snap.agents:
            agents.move_cursor(row=min(cursor, len(snap.agents) - 1))
        results = self.query_one("#results", DataTable)
        results.clear()
        for r in snap.recent:
            results.add_row(*(r[c] for c in RESULT_COLUMNS))

    def action_goto_pane(self) -> None:
        if self.snapshot is None or not self.snapshot.agents:
            return
        row = self.query_one("#agents", DataTable).cursor_row
        agent = self.snapshot.agents[row]
        try:
            tmux.select_pane(self.socket, agent.pane)
        except AutoorgError as exc:
            self.notify(str(exc), severity="error")
        else:
            self.notify(f"→ {agent.name} ({agent.pane})")


def _count_states(snap: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in snap.agents:
        counts[a.state] = counts.get(a.state, 0) + 1
    return counts
