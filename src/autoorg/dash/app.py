"""The Textual dashboard: a control room a person steers the org from.

Agents (state and for how long, live loss, last result, slot and load, branch, spend), the program head's metric
over time, the gate's queue, promotions and the board; keys that do what the CLI commands do, through the same
functions: take / release (`autoorg take|release`), pause / resume, a message composer (`autoorg msg send`), the
agent's diff against the program branch and its latest run's log, its pane (`autoorg attach`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rich.markup import escape
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Static

from autoorg import comms
from autoorg.dash.chart import MetricChart
from autoorg.dash.data import AgentRow, Snapshot, SnapshotCache, take_snapshot
from autoorg.dash.screens import ComposeScreen, TextScreen
from autoorg.errors import AutoorgError
from autoorg.org import agent_diff
from autoorg.paths import OrgPaths
from autoorg.report import figure_lines, write_report
from autoorg.runtime import tmux

# Most useful first: at 80 columns the first few fit, the rest scroll into view.
AGENT_COLUMNS = ("agent", "state", "loss", "curve", "step", "last", "exp", "slot", "branch", "role", "backend",
                 "tokens", "cost")
RESULT_COLUMNS = ("exp", "kind", "agent", "metric", "delta", "verdict", "description")
STATE_STYLE = {"working": "green", "running": "bold green", "idle": "yellow", "waiting": "bold magenta",
               "human": "bold cyan", "crashed": "bold red", "stopped": "dim", "paused": "dim", "starting": "blue"}
VERDICT_STYLE = {"promoted": "bold green", "candidate": "green", "verifying": "green", "discarded": "dim"}
LOG_TAIL_BYTES = 256 * 1024

HELP = """\
autoorg dash — keys (each does what its CLI command does)

  ↑ ↓      select an agent
  t        take the agent over (autoorg take): the daemon stops typing into its pane
  r        release it back to the org (autoorg release)
  p        pause the agent, or resume it when paused: messages wait in its inbox meanwhile
  m        send a message to the agent, a role or all (autoorg msg send)
  d        the agent's diff against the program branch (what it changed since it forked)
  l        the log of its latest run
  o        write the org's report (autoorg report: Markdown, HTML, plots) and show where it is
  Enter    jump to its pane (a headless org: where its log is)
  f5       refresh now
  ?        this help
  q        quit

Columns scroll right for more: exp, slot and load, branch (behind = the program head moved on), role,
backend/model, tokens, cost. The chart: every measured run a dot (green promoted, cyan re-runs, blue
baselines), the program head's verified metric a yellow step line. The gate panel shows the pending
verification's same-seed pairs as they land (candidate vs head, the candidate's gain); the line under the
summary, the daemon's latest notifications (an agent waiting for input or crashed, a promotion).
"""


class DashApp(App[None]):
    """`autoorg dash`; `make_app` builds it for the CLI and the tests alike."""

    TITLE = "autoorg"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    CSS = """
    #summary { height: 2; padding: 0 1; background: $boost; }
    #notices { height: 1; padding: 0 1; }
    #agents { height: auto; max-height: 45%; }
    #org { height: 1fr; }
    #chart { width: 2fr; padding: 0 1; }
    #gate { width: 1fr; padding: 0 1; border-left: vkey $primary-background; }
    #board { width: 1fr; padding: 0 1; border-left: vkey $primary-background; }
    #results { height: 1fr; }
    .-narrow #board { display: none; }
    .-narrow #results { display: none; }
    .-narrow #chart { width: 1fr; }
    """
    BINDINGS = [
        Binding("enter", "goto_pane", "Pane"),
        Binding("t", "take", "Take"),
        Binding("r", "release", "Release"),
        Binding("p", "pause", "Pause"),
        Binding("m", "message", "Msg"),
        Binding("d", "diff", "Diff"),
        Binding("l", "log", "Log"),
        Binding("o", "report", "Report"),
        Binding("question_mark", "help", "Help"),
        Binding("f5", "refresh_now", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, paths: OrgPaths, *, socket: str | None = None, refresh_s: float = 2.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.paths = paths
        self.socket = socket
        self.refresh_s = refresh_s
        self.now = now
        self.cache = SnapshotCache()
        self.snapshot: Snapshot | None = None
        self.drawn_agents: dict[str, tuple[str, ...]] = {}
        self.drawn_results: list[tuple[str, ...]] = []

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="summary")
        yield Static(id="notices")
        yield DataTable(id="agents", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="org"):
            yield MetricChart(id="chart")
            yield Static(id="gate")
            yield Static(id="board")
        yield DataTable(id="results", cursor_type="row", zebra_stripes=True, show_cursor=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        agents = self.query_one("#agents", DataTable)
        for column in AGENT_COLUMNS:
            agents.add_column(column, key=column)
        self.query_one("#results", DataTable).add_columns(*RESULT_COLUMNS)
        self.query_one("#agents", DataTable).focus()
        self.action_refresh_now()
        self.set_interval(self.refresh_s, self.action_refresh_now)

    # -----------------------------------------------------------------------------------------------------------
    # Reading and drawing

    def action_refresh_now(self) -> None:
        self.gather()

    @work(thread=True, exclusive=True)
    def gather(self) -> None:
        """Read the org off the UI thread (git, tmux, SQLite and file reads), then draw on it."""
        try:
            snap = take_snapshot(self.paths, self.cache, self.now)
        except AutoorgError as exc:
            self.call_from_thread(self.show_error, str(exc))
            return
        self.call_from_thread(self.draw, snap)

    def show_error(self, message: str) -> None:
        self.query_one("#summary", Static).update(f"[bold red]{escape(message)}[/]")

    def draw(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.sub_title = f"{snap.tag} · {'running' if snap.running else 'stopped'}"
        spend = "   ".join(s for s in (f"compute {snap.compute_h:.2f}h", snap.tokens and f"tokens {snap.tokens}",
                                       snap.cost and f"cost {snap.cost}") if s)
        counts = ", ".join(f"{n} {s}" for s, n in _count_states(snap).items())
        warning = "" if snap.daemon_alive or not snap.running else "   [bold red]daemon not running[/]"
        warning += "".join(f"   [bold yellow]stop rule: {escape(rule)}[/]" for rule in snap.stop_rules)
        self.query_one("#summary", Static).update(
            f"[b]{escape(snap.program_branch)}[/] @ {snap.program_head}  {escape(snap.metric)} {snap.arrow}  "
            f"best [b]{escape(snap.best) or '—'}[/]  {snap.promotions} promoted  {snap.experiments} exps\n"
            f"{len(snap.agents)} agents: {counts}   {spend}{warning}")
        self.fill_agents([(a.name, _agent_cells(a)) for a in snap.agents])
        self.query_one("#chart", MetricChart).show(
            snap.chart, f"{snap.metric} {snap.arrow} per run · head: yellow step line")
        self.query_one("#notices", Static).update(_notices_text(snap))
        self.query_one("#gate", Static).update(_gate_text(snap))
        self.query_one("#board", Static).update(_board_text(snap))
        recent = [tuple(escape(r[c]) for c in RESULT_COLUMNS) for r in snap.recent]
        if recent != self.drawn_results:  # a table redrawn re-renders every cell: only when it changed
            results = self.query_one("#results", DataTable)
            results.clear()
            for cells in recent:
                results.add_row(*cells)
            self.drawn_results = recent

    def fill_agents(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """Update the cells that changed; rebuild the table only when the agents did."""
        table = self.query_one("#agents", DataTable)
        if [name for name, _ in rows] == list(self.drawn_agents):
            for name, cells in rows:
                for column, (old, new) in enumerate(zip(self.drawn_agents[name], cells, strict=True)):
                    if old != new:
                        table.update_cell(name, AGENT_COLUMNS[column], new, update_width=True)
        else:
            cursor = table.cursor_row
            table.clear()
            for name, cells in rows:
                table.add_row(*cells, key=name)
            if rows:
                table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        self.drawn_agents = dict(rows)

    # -----------------------------------------------------------------------------------------------------------
    # Keys

    def selected(self) -> AgentRow | None:
        if self.snapshot is None or not self.snapshot.agents:
            return None
        row = self.query_one("#agents", DataTable).cursor_row
        return self.snapshot.agents[min(max(row, 0), len(self.snapshot.agents) - 1)]

    def _act(self, what: Callable[[AgentRow], str]) -> None:
        """Run an action on the selected agent, say what it did (or why not) and redraw."""
        agent = self.selected()
        if agent is None:
            return
        try:
            said = what(agent)
        except AutoorgError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(said)
        self.action_refresh_now()

    def action_take(self) -> None:
        def take(agent: AgentRow) -> str:
            comms.hold(self.paths, agent.name, "human", f"taken over by {comms.human_or_agent()}")
            return f"{agent.name} is yours: Enter to go to its pane; r hands it back"
        self._act(take)

    def action_release(self) -> None:
        def release(agent: AgentRow) -> str:
            return f"{agent.name} is back with the org ({comms.unhold(self.paths, agent.name)['state']})"
        self._act(release)

    def action_pause(self) -> None:
        def pause_or_resume(agent: AgentRow) -> str:
            status = comms.read_status(self.paths, agent.name) or {}
            if status.get("state") == "paused":
                return f"{agent.name} resumed ({comms.unhold(self.paths, agent.name)['state']})"
            comms.hold(self.paths, agent.name, "paused", f"paused by {comms.human_or_agent()}")
            return f"{agent.name} is paused: its messages wait in its inbox; p again resumes it"
        self._act(pause_or_resume)

    def action_message(self) -> None:
        agent = self.selected()

        def send(answer: tuple[str, str] | None) -> None:
            if answer is None:
                return
            to, text = answer
            try:
                sent = comms.send_message(self.paths, sender=comms.human_or_agent(), to=to, kind="note", body=text)
            except AutoorgError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"sent to {', '.join(p.parent.name for p in sent)}")

        self.push_screen(ComposeScreen(agent.name if agent else "all"), send)

    def action_diff(self) -> None:
        def show_diff(agent: AgentRow) -> str:
            snap = self.snapshot
            assert snap is not None
            text = agent_diff(self.paths, agent.name)  # what `autoorg diff AGENT` prints
            self.push_screen(TextScreen(f"{agent.branch} against {snap.program_branch}",
                                        text or "no changes since it forked from the program branch", lexer="diff"))
            return f"diff of {agent.name}"
        self._act(show_diff)

    def action_log(self) -> None:
        agent = self.selected()
        if agent is None:
            return
        if not agent.latest_exp:
            self.notify(f"{agent.name} has run no experiment yet")
            return
        path = self.paths.runs / agent.latest_exp / "log"
        try:
            with path.open("rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
                text = fh.read().decode("utf-8", "replace")
        except OSError as exc:
            self.notify(f"no log for {agent.latest_exp}: {exc.strerror}", severity="warning")
            return
        self.push_screen(TextScreen(f"{agent.latest_exp} ({agent.name}) — {path}", text or "(empty)"))

    def action_report(self) -> None:
        self.notify("writing the report…")
        self.write_report()

    @work(thread=True, exclusive=True, group="report")
    def write_report(self) -> None:
        """What `autoorg report` writes (matplotlib takes a moment: off the UI thread), then where it is."""
        try:
            report = write_report(self.paths)
        except AutoorgError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        figures = "\n".join(f"  {label:40} {value}" for label, value in figure_lines(report.figures))
        text = (f"{report.markdown}\n{report.html}\n{chr(10).join(str(p) for p in report.plots)}\n\n{figures}\n\n"
                f"(autoorg report --tag {self.paths.tag} writes the same; --json prints the figures)")
        self.call_from_thread(self.push_screen, TextScreen(f"report of {self.paths.tag} — {report.folder}", text))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "agents":  # Enter on the agents table
            self.action_goto_pane()

    def action_goto_pane(self) -> None:
        agent = self.selected()
        if agent is None:
            return
        if agent.log:
            self.notify(f"{agent.name} runs headless: its output is in {agent.log}")
            return
        try:
            tmux.select_pane(self.socket, agent.pane)
        except AutoorgError as exc:
            self.notify(str(exc), severity="error")
        else:
            self.notify(f"→ {agent.name} ({agent.pane})")

    def action_help(self) -> None:
        self.push_screen(TextScreen("help", HELP))


def _agent_cells(a: AgentRow) -> tuple[str, ...]:
    style = STATE_STYLE.get(a.state, "")
    state = f"{a.state} {a.since}".strip()
    branch = escape(a.branch) + (" [yellow]behind[/]" if a.behind else "")
    last = escape(a.last)
    if a.last_verdict in VERDICT_STYLE:
        last = f"[{VERDICT_STYLE[a.last_verdict]}]{last}[/]"
    elif a.last_verdict.startswith("crash"):
        last = f"[red]{last}[/]"
    return (escape(a.name), f"[{style}]{state}[/]" if style else state, a.loss, f"[cyan]{a.curve}[/]", a.step,
            last, a.exp, a.slots, branch, escape(a.role), escape(a.backend), a.tokens, a.cost)


def _gate_text(snap: Snapshot) -> str:
    lines = ["[b]gate queue[/]"]
    for g in snap.gate:
        if g.status == "verifying":
            mean = f" · {g.mean}" if g.mean else ""
            lines.append(f" {g.exp} {escape(g.agent)} [green]verifying[/] {g.landed}/{g.needed}{mean}")
            if g.pairs:
                lines.append("  [dim]pairs: candidate vs head, gain[/]")
            lines.extend(f"   {escape(pair)}" for pair in g.pairs)
        else:
            lines.append(f" {g.exp} {escape(g.agent)} [green]candidate[/] {g.mean}")
    if not snap.gate:
        lines.append(" [dim]empty[/]")
    lines.append("[b]promotions[/]")
    lines.extend(f" {escape(p)}" for p in reversed(snap.lineage))
    if not snap.lineage:
        lines.append(" [dim]none yet[/]")
    return "\n".join(lines)


NOTICE_STYLE = {"waiting": "bold magenta", "crashed": "bold red", "promoted": "bold green"}


def _notices_text(snap: Snapshot) -> str:
    """The latest notifications, newest first, on one line."""
    if not snap.notices:
        return "[dim]no notifications[/]"
    return "  ".join(f"[{NOTICE_STYLE.get(n.reason, 'b')}]{n.ts[11:16]} {escape(n.line())}[/]"
                     for n in reversed(snap.notices))


def _board_text(snap: Snapshot) -> str:
    lines = ["[b]board[/]"]
    if snap.board_error:
        lines.append(f" [red]{escape(snap.board_error)}[/]")
    lines.extend(f" [b]{escape(p.author)}[/]: {escape(p.text)}" for p in reversed(snap.posts))
    if not snap.posts and not snap.board_error:
        lines.append(" [dim]no posts yet[/]")
    return "\n".join(lines)


def _count_states(snap: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in snap.agents:
        counts[a.state] = counts.get(a.state, 0) + 1
    return counts
