"""The tmux `Session`: a pane per agent in session `autoorg-<tag>`, with `dash` and `daemon` windows."""

from __future__ import annotations

import shlex

from autoorg.runtime import tmux
from autoorg.runtime.session import Launch, LineFate, Liveness
from autoorg.state import OrgState


class TmuxSession:
    """An org's tmux session, addressed by the socket, session name and pane ids recorded in its state."""

    def __init__(self, state: OrgState) -> None:
        self.state = state

    def start(self, agents: list[Launch], *, cwd: str, env: dict[str, str], daemon_command: str,
              dash_command: str) -> None:
        state = self.state
        panes = [tmux.PaneSpec(title=a.name, cwd=a.cwd, command=a.command, env=a.env) for a in agents]
        layout = tmux.create_org_session(state.socket, tmux.session_name(state.tag), cwd=cwd, env=env,
                                         agents=panes, dash_command=dash_command, daemon_command=daemon_command)
        state.session, state.session_id = layout.session, layout.session_id
        where = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("AUTOORG_"))
        tmux.bind_dash_popup(state.socket, layout.session, f"env {where} {dash_command} --popup")
        state.windows, state.services = layout.windows, layout.services
        for name, pane in layout.panes.items():
            state.agents[name].pane = pane

    def running(self) -> bool:
        return tmux.has_session(self.state.socket, self.state.session)

    def liveness(self) -> dict[str, Liveness] | None:
        """Agents by their panes' @autoorg_agent option (what a pane says it runs), services by recorded pane."""
        panes = tmux.pane_states(self.state.socket, self.state.session)
        if panes is None:
            return None
        services = {pane: name for name, pane in self.state.services.items()}
        found = {}
        for pane, p in panes.items():
            name = p.agent if p.agent in self.state.agents else services.get(pane)
            if name:
                found[name] = Liveness(dead=p.dead, exit_status=p.exit_status, exit_signal=p.exit_signal, pid=p.pid)
        return found

    def _pane(self, agent: str) -> str:
        return self.state.agent(agent).pane

    def send_line(self, agent: str, text: str) -> bool:
        return tmux.send_and_confirm(self.state.socket, self._pane(agent), text)

    def settle_line(self, agent: str, text: str) -> LineFate:
        socket, pane = self.state.socket, self._pane(agent)
        view = tmux.input_view(socket, pane)
        if view is None or view.dead or view.in_mode:
            return "blocked"
        if view.unsent(text):  # typed, but its Enter was lost
            return "taken" if tmux.enter_and_confirm(socket, pane, text, view) else "lost"
        if any(text in line for line in tmux.capture(socket, pane, lines=5000)):
            return "taken"
        return "absent"

    def respawn(self, name: str, env: dict[str, str]) -> None:
        pane = self.state.services[name] if name in self.state.services else self._pane(name)
        tmux.respawn_pane(self.state.socket, pane, env)

    def recent_output(self, agent: str, lines: int = 200) -> list[str]:
        return tmux.capture(self.state.socket, self._pane(agent), lines=lines)

    def show_message(self, text: str) -> None:
        tmux.display_message(self.state.socket, self.state.session, text)

    def stop(self) -> bool:
        return tmux.kill_session(self.state.socket, self.state.session)
