"""Stop rules (`processes: {stop: [...]}`): every few seconds, each rule's progress from the ledger; a rule that
fires is recorded once (`experiments/stop_rules.py`), then acted on: `stop` (the org queues no new experiment; the
agents are told, the board says why) or `pause` (the agents it counts are held, as `autoorg pause` does)."""

from __future__ import annotations

from autoorg import comms
from autoorg.errors import Say
from autoorg.experiments import stop_rules
from autoorg.paths import OrgPaths
from autoorg.spec import OrgSpec

RULES_EVERY_S = 5.0
BOARD_SECTION = "Stop rules"


class StopRules:
    """The daemon's stop-rule process: `tick` (every RULES_EVERY_S) fires the rules that were reached."""

    every_s = RULES_EVERY_S

    def __init__(self, paths: OrgPaths, spec: OrgSpec, *, log: Say) -> None:
        self.paths = paths
        self.rules = spec.processes.stop
        self.agents = spec.names
        self.log = log

    def close(self) -> None:
        pass

    def tick(self) -> None:
        done = {f.key for f in stop_rules.fired(self.paths)}
        for found in stop_rules.progress(self.paths, self.rules, self.agents):
            if found.fires and found.key not in done:
                self._fire(found)

    def _fire(self, found: stop_rules.RuleProgress) -> None:
        record = stop_rules.record_fired(self.paths, found)
        whom = [found.agent] if found.agent else list(self.agents)
        scope = f"for {found.agent}" if found.agent else "for the org"
        if record.action == "stop":
            what = (f"Stop rule {record.rule} fired ({record.why}): the org accepts no new experiment {scope}; "
                    "`autoorg exp run` and `exp submit` are refused. Runs already queued finish and the gate still "
                    "verifies them. Write up what you learned (`autoorg board post`).")
        else:
            what = (f"Stop rule {record.rule} fired ({record.why}): paused {scope} until a person runs "
                    "`autoorg resume`.")
        for agent in whom:
            comms.send_message(self.paths, sender="autoorg", to=agent, kind="system", body=what)
        lines = [f"- {f.at[:19]}Z **{f.rule}** ({f.why}): {'stopped queuing' if f.action == 'stop' else 'paused'} "
                 f"{'for ' + f.agent if f.agent else 'the org'}" for f in stop_rules.fired(self.paths)]
        comms.update_board(self.paths, BOARD_SECTION, "\n".join(lines))
        comms.post_board(self.paths, "autoorg", what)
        if record.action == "pause":  # last: whoever sees the hold also finds the message and the board
            for agent in whom:
                comms.hold(self.paths, agent, "paused", f"paused by stop rule {record.rule} ({record.why})")
        self.log(f"stop rule {record.rule} fired ({record.why}): {record.action} {scope}")
