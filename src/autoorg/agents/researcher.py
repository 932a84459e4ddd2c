"""The offline researcher: an honest agent with no LLM, for orgs on machines without one and for fast tests.

It searches the task's declared knobs (module-level `NAME = value` constants in the editable file) by local search
around the verified best, using the whole org's ledger:

1. The centre is the program head's configuration (the verified best). Sometimes (EXPLOIT_P) it is instead the
   configuration of the best run anyone measured that beat the head's mean but is not verified yet.
2. One knob (sometimes two) is moved by ±step in the knob's unit range (log scale where the knob says so; a
   choice moves by whole positions). The direction follows the evidence where there is some: if a run that
   differs from the centre only in that knob did better, that side is preferred.
3. The step starts at START_STEP of the range and shrinks by SHRINK after every SHRINK_AFTER experiments of this
   agent without a promotion in the org (down to MIN_STEP); a promotion resets it.
4. A configuration anyone already tried (rounded to ROUND in unit range) is never proposed again.

A chief's `directive` message narrows the search: `explore NAME[, NAME…]` (only those knobs), `range NAME LOW HIGH`
(a narrower range), `reset` (back to the task's knobs); any other message is acknowledged in its pane with that
grammar. An idea someone else queued (`autoorg idea add`) is claimed before the next proposal: its `NAME = value`
lines are run as the next experiment, its directive lines applied, and it is closed with the result (or with why
nothing in it could be acted on). Between experiments the researcher reads its inbox, posts a
one-line result to the board, and calls `gate.step` (idempotent and locked), so a live org verifies and promotes
even with no daemon running.
"""

from __future__ import annotations

import ast
import math
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from autoorg import comms, experiments, gate, workspace
from autoorg.agents import usage
from autoorg.compute import slots
from autoorg.errors import AutoorgError, Say
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.spec import Knob

START_STEP = 0.25
MIN_STEP = 0.03
SHRINK = 0.7
SHRINK_AFTER = 3
EXPLOIT_P = 0.3
TWO_KNOBS_P = 0.2
ROUND = 0.01
PROPOSAL_TRIES = 60
HELD_POLL_S = 1.0  # how often a held researcher looks whether it was released


# ---------------------------------------------------------------------------------------------------------------
# Knobs in a file


DIRECTIVES = "explore NAME[, NAME…] | range NAME LOW HIGH | reset"


def _assignment(name: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<lhs>{re.escape(name)}\s*(?::[^=]+)?=\s*)(?P<value>[^#\n]*?)(?P<rest>\s*(?:#.*)?)$",
                      re.M)


def read_knobs(text: str, knobs: list[Knob]) -> dict[str, Any]:
    """The current value of each knob found as a module-level `NAME = literal` line."""
    values = {}
    for k in knobs:
        m = _assignment(k.name).search(text)
        if m:
            try:
                values[k.name] = ast.literal_eval(m["value"].strip())
            except (ValueError, SyntaxError):
                continue
    return values


def format_value(knob: Knob, value: Any) -> str:
    if knob.type == "int":
        return str(int(round(value)))
    if knob.type == "float":
        text = f"{float(value):.4g}"
        return text if any(c in text for c in ".e") else text + ".0"
    return repr(value)


def write_knobs(text: str, knobs: list[Knob], values: dict[str, Any]) -> str:
    """Rewrite the `NAME = value` lines of the knobs in values, keeping annotations and trailing comments."""
    for k in knobs:
        if k.name in values:
            new = format_value(k, values[k.name])

            def put(m: re.Match[str], new: str = new) -> str:
                return f"{m['lhs']}{new}{m['rest']}"

            text = _assignment(k.name).sub(put, text, count=1)
    return text


# ---------------------------------------------------------------------------------------------------------------
# The unit range of a knob


def to_unit(knob: Knob, value: Any) -> float:
    if knob.type in ("choice", "bool"):
        options = knob.choices if knob.type == "choice" else [False, True]
        return options.index(value) / max(1, len(options) - 1) if value in options else 0.5
    lo, hi = float(knob.low or 0.0), float(knob.high or 1.0)
    v = min(max(float(value), lo), hi)
    if knob.log and lo > 0:
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (v - lo) / (hi - lo) if hi > lo else 0.5


def from_unit(knob: Knob, u: float) -> Any:
    u = min(max(u, 0.0), 1.0)
    if knob.type in ("choice", "bool"):
        options = knob.choices if knob.type == "choice" else [False, True]
        return options[round(u * (len(options) - 1))]
    lo, hi = float(knob.low or 0.0), float(knob.high or 1.0)
    value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if knob.log and lo > 0 else lo + u * (hi - lo)
    return int(round(value)) if knob.type == "int" else float(f"{value:.4g}")


def config_key(knobs: list[Knob], values: dict[str, Any]) -> tuple[float, ...]:
    return tuple(round(to_unit(k, values[k.name]) / ROUND) * ROUND if k.name in values else -1.0 for k in knobs)


# ---------------------------------------------------------------------------------------------------------------
# Directives from a chief


@dataclass
class Focus:
    names: list[str] | None = None  # None: every knob
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


def apply_directive(focus: Focus, body: str, knobs: list[Knob]) -> tuple[Focus, list[str]]:
    """Update the focus from a directive's lines; returns it and what was understood (for the log)."""
    names = {k.name.lower(): k.name for k in knobs}
    understood = []
    for line in body.splitlines():
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", line)
        if not words:
            continue
        verb = words[0].lower()
        if verb in ("explore", "focus", "only"):
            picked = [names[w.lower()] for w in words[1:] if w.lower() in names]
            if picked:
                focus = replace(focus, names=picked)
                understood.append(f"explore only {', '.join(picked)}")
        elif verb == "range" and len(words) >= 4 and words[1].lower() in names:
            try:
                lo, hi = sorted((float(words[2]), float(words[3])))
            except ValueError:
                continue
            name = names[words[1].lower()]
            focus = replace(focus, ranges={**focus.ranges, name: (lo, hi)})
            understood.append(f"{name} within [{lo:g}, {hi:g}]")
        elif verb == "reset":
            focus = Focus()
            understood.append("back to every knob over its full range")
    return focus, understood


def focused_knobs(knobs: list[Knob], focus: Focus) -> list[Knob]:
    out = []
    for k in knobs:
        if focus.names is not None and k.name not in focus.names:
            continue
        if k.name in focus.ranges and k.type in ("float", "int"):
            lo, hi = focus.ranges[k.name]
            k = replace(k, low=max(lo, k.low or lo), high=min(hi, k.high if k.high is not None else hi))
        out.append(k)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The researcher


@dataclass
class Evidence:
    """What the org has measured: the mean metric of every configuration run at the task's budget."""

    means: dict[tuple[float, ...], float]
    values: dict[tuple[float, ...], dict[str, Any]]
    tried: set[tuple[float, ...]]
    experiments: int
    promotions: int


class Researcher:
    def __init__(self, paths: OrgPaths, agent: str, *, say: Say = print, seed: int | None = None) -> None:
        self.paths = paths
        self.agent = agent
        self.say = say
        self.rng = random.Random(seed if seed is not None else hash((agent, time.time())))
        self.ctx = experiments.load_context(paths)
        self.focus = Focus()
        self.step = START_STEP
        self.misses = 0
        self.promotions_seen = 0
        self._configs: dict[str, dict[str, Any] | None] = {}

    @property
    def knobs(self) -> list[Knob]:
        return self.ctx.task.knobs

    def tell(self, line: str) -> None:
        self.say(f"{self.agent} · {line}")

    def status(self, state: str, detail: str = "") -> None:
        try:
            comms.report_status(self.paths, self.agent, state, detail)
        except AutoorgError as exc:
            self.tell(f"(could not write my status: {exc})")

    # -- reading the org --------------------------------------------------------------------------------------

    def config_at(self, commit: str) -> dict[str, Any] | None:
        if commit not in self._configs:
            values: dict[str, Any] = {}
            for file in sorted({k.file for k in self.knobs}):
                text = workspace.read_file_at(self.ctx.repo, commit, file)
                if text is not None:
                    values.update(read_knobs(text, [k for k in self.knobs if k.file == file]))
            self._configs[commit] = values or None
        return self._configs[commit]

    def evidence(self) -> Evidence:
        rows = ledger.experiments(self.paths)
        groups: dict[tuple[float, ...], list[float]] = {}
        values: dict[tuple[float, ...], dict[str, Any]] = {}
        tried = set()
        for r in rows:
            config = self.config_at(r["commit_sha"])
            if config is None:
                continue
            key = config_key(self.knobs, config)
            tried.add(key)
            values[key] = config
            if r["metric"] is not None and r["standard"] and not r["verdict"].startswith(("crash", "over budget")):
                groups.setdefault(key, []).append(r["metric"])
        means = {k: sum(v) / len(v) for k, v in groups.items()}
        return Evidence(means, values, tried, sum(r["kind"] == "exp" for r in rows),
                        len(ledger.promotions(self.paths)))

    def read_inbox(self) -> None:
        messages = comms.read_inbox(self.paths, self.agent)
        for m in messages:
            first = m.body.strip().splitlines()[0] if m.body.strip() else ""
            if m.kind == "directive":
                self.focus, understood = apply_directive(self.focus, m.body, self.knobs)
                self.tell(f"directive from {m.sender}: {first}" +
                          (f" → {'; '.join(understood)}" if understood else " (nothing I can act on)"))
            else:
                self.tell(f"{m.kind} from {m.sender}: {first[:160]}")
                self.tell(f"noted; I act on directives: {DIRECTIVES} (send with --kind directive)")
        if messages:
            comms.mark_read(self.paths, self.agent, messages)

    def claim_idea(self) -> tuple[str, dict[str, Any]] | None:
        """Claim the oldest idea someone else queued: (its id, the knob values it sets). Directive lines in it
        narrow the search; an idea with nothing I can act on is closed at once, saying so."""
        for idea in comms.list_ideas(self.paths):
            if idea.author == self.agent:
                continue
            try:
                comms.claim_idea(self.paths, self.agent, idea.id)
            except AutoorgError:
                continue  # another agent claimed it first
            text = f"{idea.title}\n{idea.body}"
            values = read_knobs(text, self.knobs)
            self.focus, understood = apply_directive(self.focus, text, self.knobs)
            self.tell(f"claimed idea {idea.id} from {idea.author}: {idea.title[:120]}")
            if values or understood:
                if understood:
                    self.tell(f"idea {idea.id} → {'; '.join(understood)}")
                if not values:
                    comms.finish_idea(self.paths, self.agent, idea.id, "applied: " + "; ".join(understood))
                    return None
                return idea.id, values
            comms.finish_idea(self.paths, self.agent, idea.id, "nothing an offline researcher can act on: I run "
                              f"`NAME = value` lines for the task's knobs and act on directives ({DIRECTIVES})")
            self.tell(f"idea {idea.id}: nothing I can act on (I read `NAME = value` lines and {DIRECTIVES})")
        return None

    # -- proposing ------------------------------------------------------------------------------------------

    def propose(self, head: dict[str, Any], ev: Evidence, head_mean: float | None) -> tuple[dict[str, Any], str]:
        """The next configuration and a one-line reason."""
        knobs = focused_knobs([k for k in self.knobs if k.name in head], self.focus)
        if not knobs:
            raise AutoorgError("no knobs to explore (the task declares none I can find, or the directive "
                               "excludes them all)")
        centre, centre_name = head, "the program head"
        task = self.ctx.task
        if head_mean is not None and self.rng.random() < EXPLOIT_P:
            leads = [(m, k) for k, m in ev.means.items() if task.better(m, head_mean) and k in ev.values]
            if leads:
                _, best_key = max(leads, key=lambda t: task.improvement(t[0], head_mean))
                centre, centre_name = {**head, **ev.values[best_key]}, "the best unverified lead"
        for attempt in range(PROPOSAL_TRIES):
            step = min(0.5, self.step * (1 + attempt / 10))
            moved = self.rng.sample(knobs, 2 if len(knobs) > 1 and self.rng.random() < TWO_KNOBS_P else 1)
            proposal = dict(centre)
            changes = []
            for k in moved:
                u = to_unit(k, centre[k.name])
                direction = self._direction(k, centre, ev)
                new = from_unit(k, u + direction * step * (0.5 + self.rng.random()))
                if new == centre[k.name] and k.type in ("choice", "bool", "int"):
                    new = from_unit(k, u + direction * max(step, 1 / max(1, len(k.choices or [0, 1]) - 1)))
                proposal[k.name] = new
                changes.append(f"{k.name} {format_value(k, centre[k.name])} → {format_value(k, new)}")
            if proposal != centre and config_key(self.knobs, proposal) not in ev.tried:
                why = f"from {centre_name}, step {step:.2f} of the range; nobody has tried it"
                return proposal, f"{'; '.join(changes)} ({why})"
        raise AutoorgError("every nearby configuration has been tried; waiting for a directive or a promotion")

    def _direction(self, knob: Knob, centre: dict[str, Any], ev: Evidence) -> int:
        """+1 or -1: towards a better neighbour along this knob when the ledger has one, else a coin flip."""
        base = ev.means.get(config_key(self.knobs, centre))
        if base is not None and self.rng.random() < 0.8:
            u0 = to_unit(knob, centre[knob.name])
            best: tuple[float, int] | None = None
            for key, mean in ev.means.items():
                other = ev.values.get(key)
                if other is None or other.get(knob.name) == centre[knob.name]:
                    continue
                if any(other.get(k.name) != centre.get(k.name) for k in self.knobs if k.name != knob.name):
                    continue
                gain = self.ctx.task.improvement(mean, base)
                side = 1 if to_unit(knob, other[knob.name]) > u0 else -1
                if best is None or gain > best[0]:
                    best = (gain, side)
            if best is not None:
                return best[1] if best[0] > 0 else -best[1]
        return 1 if self.rng.random() < 0.5 else -1

    # -- one experiment --------------------------------------------------------------------------------------

    def experiment(self) -> dict[str, Any] | None:
        """Read, propose, edit, run, report. Returns the ledger row (None when nothing could be proposed)."""
        ctx, paths = self.ctx, self.paths
        self.status("working", "reading the org")
        self.read_inbox()
        self.gate_step()
        head = ctx.program_head()
        ev = self.evidence()
        if ev.promotions > self.promotions_seen:
            if self.promotions_seen or ev.promotions:
                self.tell(f"the org has {ev.promotions} promotion(s); starting again from the new best")
            self.promotions_seen, self.step, self.misses = ev.promotions, START_STEP, 0
        head_config = self.config_at(head)
        if head_config is None:
            raise AutoorgError(f"cannot read the task's knobs from {', '.join(sorted({k.file for k in self.knobs}))}"
                               " at the program head")
        cls = slots.agent_slots(ctx.spec, self.agent)[0].cls
        stats = gate.head_stats(ctx, head, cls)
        noise = gate.noise(paths, cls)
        metric = ctx.task.metric
        if stats.mean is not None:
            sigma = f", σ {noise.sigma:.3g}" if noise.sigma is not None else ""
            self.tell(f"program head {head[:10]}: {metric} {stats.mean:.6g} over {stats.n} runs{sigma}; "
                      f"{ev.experiments} experiments in the org, {ev.promotions} promoted")
        else:
            self.tell(f"program head {head[:10]}: no measurement yet (the gate's baseline is coming)")
        idea = self.claim_idea()
        if idea is not None:
            proposal, why = {**head_config, **idea[1]}, f"idea {idea[0]}: " + ", ".join(
                f"{name}={value!r}" for name, value in idea[1].items())
        else:
            proposal, why = self.propose(head_config, ev, stats.mean)
        self.tell(f"idea: {why}")
        worktree = ctx.worktree(self.agent)
        workspace.checkout_paths(worktree, head, ctx.task.editable)
        for file in sorted({k.file for k in self.knobs}):
            path = worktree / file
            path.write_text(write_knobs(path.read_text(), [k for k in self.knobs if k.file == file], proposal))
        changes = [f"{k.name}={format_value(k, proposal[k.name])}" for k in self.knobs
                   if k.name in proposal and proposal[k.name] != head_config.get(k.name)]
        exp = experiments.queue_experiment(ctx, self.agent, "heuristic: " + ", ".join(changes),
                                            spend=usage.spend(self.paths, self.agent))
        self.tell(f"running {exp}")
        row = gate.run_experiment(ctx, exp, say=self.tell)
        for line in gate.answer(ctx, row).splitlines():
            self.say(line)
        value = f"{row['metric']:.6g}" if row["metric"] is not None else "-"
        delta = f" ({row['delta']:+.4g} vs head)" if row["delta"] is not None else ""
        if idea is not None:
            comms.finish_idea(paths, self.agent, idea[0], f"{exp}: {metric} {value}{delta} → {row['verdict']}")
        try:
            comms.post_board(paths, self.agent, f"{exp} {', '.join(changes)}: {metric} {value}{delta} "
                                                f"→ {row['verdict']}")
        except AutoorgError as exc:
            self.tell(f"(could not post to the board: {exc})")
        if row["verdict"] in ("candidate",):
            self.misses = 0
        else:
            self.misses += 1
            if self.misses % SHRINK_AFTER == 0:
                self.step = max(MIN_STEP, self.step * SHRINK)
                self.tell(f"{self.misses} experiments without a win: narrowing my step to {self.step:.2f}")
        self.gate_step()
        return row

    def gate_step(self) -> None:
        try:
            gate.step(self.paths, log=lambda line: self.tell(f"gate: {line}"))
        except AutoorgError as exc:
            self.tell(f"gate: {exc}")

    def held(self) -> str | None:
        """`human` or `paused` while a person holds this agent (`autoorg take`/`pause`): it starts nothing new."""
        try:
            state = (comms.read_status(self.paths, self.agent) or {}).get("state")
        except AutoorgError:
            return None
        return state if state in comms.HELD_STATES else None

    def wait_while_held(self) -> None:
        state = self.held()
        if state is None:
            return
        self.tell(f"held ({state}): starting nothing new until `autoorg release`/`resume {self.agent}`")
        while self.held() is not None:
            time.sleep(HELD_POLL_S)
        self.tell("released: back to work")

    def run(self, max_experiments: int | None = None) -> int:
        """Experiment until stopped (or max_experiments). Errors are reported and retried with a pause."""
        done = 0
        pause = 1.0
        self.tell(f"offline researcher on task {self.ctx.task.name}: searching "
                  f"{', '.join(k.name for k in self.knobs) or 'no knobs'} ({ctx_metric(self.ctx)})")
        while max_experiments is None or done < max_experiments:
            self.wait_while_held()
            try:
                row = self.experiment()
                done += 1
                pause = 1.0
                if row is not None and row["verdict"].startswith("crash"):
                    time.sleep(pause)
            except AutoorgError as exc:
                self.tell(f"cannot go on right now: {exc}; trying again in {pause:.0f}s")
                self.status("idle", str(exc)[:200])
                time.sleep(pause)
                self.gate_step()
                pause = min(60.0, pause * 2)
        self.status("idle", f"done: {done} experiments")
        return done


def ctx_metric(ctx: experiments.OrgContext) -> str:
    return f"{ctx.task.metric}, {ctx.task.direction}"
