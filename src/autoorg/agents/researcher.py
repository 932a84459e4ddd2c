"""The offline researcher: an honest agent with no LLM, for orgs on machines without one and for fast tests.

It searches the task's declared knobs (module-level `NAME = value` constants in the editable file) by local search
around the verified best, using the whole org's ledger:

1. The centre is the program head's configuration (the verified best). Sometimes (EXPLOIT_P) it is instead the
   configuration of the best run anyone measured that beat the head's mean but is not verified yet.
2. One knob (sometimes two, once every knob has been moved alone from the centre) is moved by ±step in the knob's
   unit range (log scale where the knob says so; a choice moves by whole positions). The knob is one that nobody in
   the org (measured, running or queued) has yet moved alone from the centre, or the least so, the first of those
   the task lists (`propose`): four agents do not all try the same knob first. Ahead of those
   comes the other side of a knob whose move alone made things clearly worse (by over REVERSE_SIGMAS of the org's
   noise σ), the worst first: a steep slope one way is the best-founded bet the other way, and in a single round
   of probes with coin-flip directions half the knobs that matter are first moved the wrong way. The direction
   follows the evidence where there is some: if a run that differs from the centre only in that knob did better,
   that side is preferred; else the side nobody has tried, else a coin flip.
3. The step starts at START_STEP of the range and shrinks by SHRINK after every SHRINK_AFTER experiments of this
   agent without a promotion in the org (down to MIN_STEP); a promotion resets it.
4. A configuration anyone already tried (rounded to ROUND in unit range) is never proposed again.
5. A proposal of its own still waiting for a slot is withdrawn (its run cancelled before it starts) once the org
   has a reversal (1.) that nobody has queued, nor stepped aside to queue, and the proposal is not one: the next
   proposal is that reversal. One agent steps aside for it: on nanochat all four waiting proposals were withdrawn
   for one reversal (`UNEMBEDDING_LR`), among them `DEPTH = 1`, which was then proposed again as `DEPTH = 5`. A
   run waits for a slot for rounds while the gate verifies, and a proposal made before a knob was seen to hurt
   would otherwise take the slot first. It also steps aside (withdrawn the same way) for a reversal another agent
   queued behind it that would otherwise not get a slot in the next round (`steps_aside_for`); the next proposal
   is then made afresh and lines up behind the reversal.

A chief's `directive` message narrows the search: `explore NAME[, NAME…]` (only those knobs), `range NAME LOW HIGH`
(a narrower range), `reset` (back to the task's knobs); any other message is acknowledged in its pane with that
grammar. An idea someone else queued (`autoorg idea add`) is claimed before the next proposal: its `NAME = value`
lines are run as the next experiment, its directive lines applied, and it is closed with the result (or with why
nothing in it could be acted on). Between experiments the researcher reads its inbox, posts a
one-line result to the board, and calls `gate.step` (idempotent and locked), so a live org verifies and promotes
even with no daemon running.

Roles (the agent's role in the org spec): a `worker` takes the idea queue's ideas first (`set NAME=value, …`,
skipping one whose configuration was already run), adds its own proposal to the queue when the queue runs short
(unless a similar idea is queued, claimed or done), and closes each idea with its result. A critic's refusal that
asks for an ablation (`ablate: NAME=value alone, …`) is run next, one knob at a time. In an org whose agents work
alone (`processes.comms.shared: false`) it neither reads nor posts to the board and uses no idea queue. The chief
and the critic, who run nothing, are in `agents/offline.py`.
"""

from __future__ import annotations

import ast
import difflib
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from autoorg import comms, experiments, gate, workspace
from autoorg.agents import search, usage
from autoorg.agents.knobs import config_key, format_value, from_unit, read_knobs, to_unit, write_knobs
from autoorg.compute import slots
from autoorg.errors import AutoorgError, RunnerError, Say
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
from autoorg.spec import Knob

# A first step of half the range (moving nanochat's untuned start to DEPTH 1, BATCH_TOKENS 2048, MATRIX_LR 0.05-0.08:
# bigger single-knob wins than a quarter's DEPTH 2, 4096 and 0.03-0.04) cost the bundled bench's topologies on the
# synthetic task a fifth to a quarter of their verified gain (queue 0.116 → 0.086, independent 0.107 → 0.087, solo
# 0.101 → 0.073; random search and TPE, which do not use it, 0.08 in both runs of the suite), and gave no faster
# first promotion on nanochat in three runs (16.4, 19.0, 11.4 minutes): a quarter it stays.
START_STEP = 0.25
MIN_STEP = 0.03
SHRINK = 0.7
SHRINK_AFTER = 3
EXPLOIT_P = 0.3
# A knob moved alone that made the centre worse by over this many σ (one run against the centre's mean: a no-effect
# move crosses 2σ about 3% of the time) is moved the other way next. On nanochat's untuned CPU baseline (σ 0.045)
# the first round's probes that hurt were BATCH_TOKENS 8192 → 16384 (+0.23 val_bpb), VALUE_EMBED_EVERY 1 → 0
# (+0.17) and UNEMBEDDING_LR 0.004 → 0.0018 (+0.16); each knob's other side then waited for a round over all
# nine (benchmarks/first_promotion.py --timeline).
REVERSE_SIGMAS = 2.0
# Two knobs move at once (this often) only when each knob has been moved alone from the centre: a one-knob move's
# result says which way that knob goes (the reversal above, the direction below), a two-knob move's says it of
# neither. On nanochat a first-round `EMBEDDING_LR, DEPTH=4` (+0.30 val_bpb, 7σ) never led to DEPTH's other side,
# the org's biggest win, which waited ten minutes (benchmarks/first_promotion.py --timeline).
TWO_KNOBS_P = 0.2
# How often a researcher whose run waits for a slot looks whether a reversal has overtaken it (5. above). On
# nanochat a first-round `UNEMBEDDING_LR` waited 9 minutes behind a verification and ran in its one yielded round,
# ahead of `DEPTH=1` (-0.39 val_bpb, the other side of a +0.27 `DEPTH=4`), which ran 7 minutes later
# (benchmarks/first_promotion.py --timeline: first promotion at 21.4 minutes).
OVERTAKEN_POLL_S = 5.0
PROPOSAL_TRIES = 60
HELD_POLL_S = 1.0  # how often a held researcher looks whether it was released
QUEUE_LOW = 2  # a worker adds its own idea when fewer than this are queued
SIMILAR = 0.9  # difflib ratio over normalised titles above which two free-text ideas are the same idea


# ---------------------------------------------------------------------------------------------------------------
# Ideas in the queue


DIRECTIVES = "explore NAME[, NAME…] | range NAME LOW HIGH | reset"
WITHDRAWN = "cancelled: withdrawn by its agent"  # a queued proposal a reversal overtook (5. above)
STEPPED_ASIDE = re.compile(re.escape(WITHDRAWN) + r" for the other side of (\w+)[ ,]")


def parse_assignments(text: str, knobs: list[Knob]) -> dict[str, Any]:
    """`NAME=value` pairs of known knobs in a line (`set LEARNING_RATE=0.003, DEPTH=6`); others are ignored."""
    names = {k.name.lower(): k.name for k in knobs}
    found = {}
    for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^,;\s]+)", text):
        if name.lower() in names:
            try:
                found[names[name.lower()]] = ast.literal_eval(value.rstrip("."))
            except (ValueError, SyntaxError):
                continue
    return found


def idea_title(knobs: list[Knob], values: dict[str, Any]) -> str:
    return "set " + ", ".join(f"{k.name}={format_value(k, values[k.name])}" for k in knobs if k.name in values)


def normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9_.=]+", text.lower()))


def same_idea(a: str, b: str, knobs: list[Knob]) -> bool:
    """Two ideas are one when they set the same knobs to the same values, or (free text) read nearly the same."""
    sa, sb = parse_assignments(a, knobs), parse_assignments(b, knobs)
    if sa or sb:
        return sa == sb
    return difflib.SequenceMatcher(None, normalised(a), normalised(b)).ratio() >= SIMILAR


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
    sigma: float | None = None  # the org's noise on this agent's slots (one run's σ; None while unknown)
    # knobs whose other side an agent withdrew a run of its own for and has queued nothing since: its next
    # proposal is that reversal, so nobody else's run steps aside for it as well
    stepping_aside: frozenset[str] = frozenset()


class Researcher:
    def __init__(self, paths: OrgPaths, agent: str, *, say: Say = print, seed: int | None = None,
                 strategy: str = "local") -> None:
        self.paths = paths
        self.search = search.strategy(strategy)
        self.agent = agent
        self.say = say
        self.rng = random.Random(seed if seed is not None else hash((agent, time.time())))
        self.ctx = experiments.load_context(paths)
        self.focus = Focus()
        self.step = START_STEP
        self.misses = 0
        self.promotions_seen = 0
        self._configs: dict[str, dict[str, Any] | None] = {}
        self.role = self.ctx.spec.agent(agent).role
        self.shared = self.ctx.spec.processes.comms.shared
        self.todo: list[dict[str, Any]] = []  # ablations a critic asked for, run before anything else
        self.own: dict[str, Any] | None = None  # the queued run's configuration when it is this agent's own proposal

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
            if r["metric"] is not None or not r["verdict"].startswith("cancelled"):
                tried.add(key)  # a run cancelled before it measured anything (one withdrawn) tried nothing
            values[key] = config
            if r["metric"] is not None and r["standard"] and not r["verdict"].startswith(("crash", "over budget")):
                groups.setdefault(key, []).append(r["metric"])
        means = {k: sum(v) / len(v) for k, v in groups.items()}
        try:
            where = slots.agent_slots(self.ctx.spec, self.agent)
        except RunnerError:  # a chief runs nothing: it proposes for the org's slots
            where = slots.org_slots(self.ctx.spec)
        sigma = gate.noise(self.paths, where[0].cls).sigma if where else None
        latest = {r["agent"]: r for r in rows if r["kind"] == "exp"}  # rows are oldest first
        aside = frozenset(m.group(1) for r in latest.values() if (m := STEPPED_ASIDE.match(r["verdict"] or "")))
        return Evidence(means, values, tried, sum(r["kind"] == "exp" for r in rows),
                        len(ledger.promotions(self.paths)), sigma, aside)

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
                asked = m.body.partition("ablate:")[2]
                ablations = [one for part in (asked.split(",") if "refused" in m.body else [])
                             if (one := parse_assignments(part, self.knobs))]
                for one in ablations:
                    self.todo.append(one)
                    self.tell(f"ablation to run: {idea_title(self.knobs, one)}")
                if not ablations:
                    self.tell(f"noted; I act on directives: {DIRECTIVES} (send with --kind directive)")
        if messages:
            comms.mark_read(self.paths, self.agent, messages)

    def claim_idea(self) -> tuple[comms.Idea, dict[str, Any]] | None:
        """Claim the oldest idea someone else queued: (the idea, the knob values it sets). Directive lines in it
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
                return idea, values
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
        sides = {k.name: self._tried_sides(k, centre, ev) for k in knobs}
        reversal = self._reversals(knobs, centre, ev, sides)[:1]  # before any lead: the best-founded bet
        if not reversal and head_mean is not None and self.rng.random() < EXPLOIT_P:
            leads = [(m, k) for k, m in ev.means.items() if task.better(m, head_mean) and k in ev.values]
            if leads:
                _, best_key = max(leads, key=lambda t: task.improvement(t[0], head_mean))
                centre, centre_name = {**head, **ev.values[best_key]}, "the best unverified lead"
                sides = {k.name: self._tried_sides(k, centre, ev) for k in knobs}
                reversal = self._reversals(knobs, centre, ev, sides)[:1]
        fewest = min(len(s) for s in sides.values())
        fresh = reversal or [k for k in knobs if len(sides[k.name]) == fewest]
        swept = not reversal and all(self._moved_from(k, centre, ev) for k in knobs)
        for attempt in range(PROPOSAL_TRIES):
            step = min(0.5, self.step * (1 + attempt / 10))
            # The least explored first, in the order the task lists them, then any. Proposals are made one at a time,
            # each seeing the others' queued runs, so agents starting together take the first few knobs listed. At
            # random, nanochat's DEPTH (listed fourth of nine), whose move down was the first promotion in five of six
            # runs, was the 2nd to 8th knob moved; moved 7th and 8th, the wrong way first, and behind the
            # verifications other knobs' probes started, it made the two slowest first promotions (14.6 and 18.8
            # minutes; the others 8.6 to 12.2: benchmarks/first_promotion.py --timeline).
            first = fresh[attempt] if attempt < len(fresh) else self.rng.choice(knobs)
            moved = [first]
            if swept and len(knobs) > 1 and self.rng.random() < TWO_KNOBS_P:
                moved.append(self.rng.choice([k for k in knobs if k is not first]))
            proposal = dict(centre)
            changes = []
            for k in moved:
                u = to_unit(k, centre[k.name])
                direction = self._direction(k, centre, ev, untried=({-1, 1} - sides[k.name]))
                new = from_unit(k, u + direction * step * (0.5 + self.rng.random()))
                if new == centre[k.name] and k.type in ("choice", "bool", "int"):
                    new = from_unit(k, u + direction * max(step, 1 / max(1, len(k.choices or [0, 1]) - 1)))
                proposal[k.name] = new
                changes.append(f"{k.name} {format_value(k, centre[k.name])} → {format_value(k, new)}")
            if proposal != centre and config_key(self.knobs, proposal) not in ev.tried:
                why = f"from {centre_name}, step {step:.2f} of the range; nobody has tried it"
                return proposal, f"{'; '.join(changes)} ({why})"
        raise AutoorgError("every nearby configuration has been tried; waiting for a directive or a promotion")

    def next_config(self, head: dict[str, Any], ev: Evidence, head_mean: float | None) -> tuple[dict[str, Any], str]:
        """The next configuration by this agent's strategy (`local`: propose(); else agents/search.py)."""
        if self.search is None:
            return self.propose(head, ev, head_mean)
        knobs = focused_knobs([k for k in self.knobs if k.name in head], self.focus)
        if not knobs:
            raise AutoorgError("no knobs to explore (the task declares none I can find, or the directive "
                               "excludes them all)")
        return self.search.propose(knobs, head, self.observations(), lambda c: config_key(self.knobs, c) in ev.tried,
                                   self.ctx.task.better, self.rng)

    def observations(self) -> list[search.Observation]:
        """Every configuration measured at the task's budget: its mean, whether I ran it, my best single run."""
        groups: dict[tuple[float, ...], search.Observation] = {}
        runs: dict[tuple[float, ...], list[float]] = {}
        better = self.ctx.task.better
        for r in ledger.experiments(self.paths):
            config = self.config_at(r["commit_sha"])
            if (config is None or r["metric"] is None or not r["standard"]
                    or r["verdict"].startswith(("crash", "over budget", "void"))):
                continue
            key = config_key(self.knobs, config)
            obs = groups.setdefault(key, search.Observation(values=config, mean=r["metric"]))
            runs.setdefault(key, []).append(r["metric"])
            obs.mean = sum(runs[key]) / len(runs[key])
            if r["agent"] == self.agent and r["kind"] == "exp":
                obs.mine = True
                if obs.best_single is None or better(r["metric"], obs.best_single):
                    obs.best_single = r["metric"]
        return list(groups.values())

    def _tried_sides(self, knob: Knob, centre: dict[str, Any], ev: Evidence) -> set[int]:
        """The sides (+1 up, -1 down) spent for this knob at the centre: someone in the org already moved it alone
        from there (measured, running or queued), or the centre is at that end of its range."""
        u0 = to_unit(knob, centre[knob.name])
        sides = {side for side, end in ((-1, 0.0), (1, 1.0)) if u0 == end}
        for key in ev.tried:
            other = ev.values.get(key)
            if other is not None and self._moved_alone(knob, centre, other):
                sides.add(1 if to_unit(knob, other[knob.name]) > u0 else -1)
        return sides

    def _moved_from(self, knob: Knob, centre: dict[str, Any], ev: Evidence) -> bool:
        """Whether someone in the org moved this knob alone from the centre (measured, running or queued)."""
        return any(other is not None and self._moved_alone(knob, centre, other)
                   for other in (ev.values.get(key) for key in ev.tried))

    def _moved_alone(self, knob: Knob, centre: dict[str, Any], other: dict[str, Any]) -> bool:
        """Whether `other` differs from the centre in this knob and in no other."""
        return (knob.name in other and other[knob.name] != centre[knob.name]
                and all(other.get(k.name) == centre.get(k.name) for k in self.knobs if k.name != knob.name))

    def _reversals(self, knobs: list[Knob], centre: dict[str, Any], ev: Evidence,
                   sides: dict[str, set[int]]) -> list[Knob]:
        """Knobs with one side left whose move alone to the other side made the centre worse by over
        REVERSE_SIGMAS·σ, the most harmful first ([] while the centre or σ is unmeasured)."""
        base = ev.means.get(config_key(self.knobs, centre))
        if base is None or not ev.sigma:
            return []
        harms: list[tuple[float, Knob]] = []
        for k in knobs:
            if len(sides[k.name]) != 1:
                continue
            harm = self._harm(k, centre, ev)
            if harm is not None and harm > REVERSE_SIGMAS * ev.sigma:
                harms.append((harm, k))
        return [k for _, k in sorted(harms, key=lambda h: -h[0])]

    def _harm(self, knob: Knob, centre: dict[str, Any], ev: Evidence, side: int | None = None) -> float | None:
        """How much worse than the centre's mean the measured moves of this knob alone were (the least of them;
        only those to `side`, +1 up or -1 down, when given; None while none is measured or the centre is
        unmeasured)."""
        base = ev.means.get(config_key(self.knobs, centre))
        if base is None:
            return None
        u0 = to_unit(knob, centre[knob.name])
        losses = [-self.ctx.task.improvement(mean, base) for key, mean in ev.means.items()
                  if (other := ev.values.get(key)) is not None and self._moved_alone(knob, centre, other)
                  and (side is None or (to_unit(knob, other[knob.name]) > u0) == (side > 0))]
        return min(losses) if losses else None

    def overtaken(self, proposal: dict[str, Any]) -> Knob | None:
        """The knob whose other side the org should try before this queued proposal: the most harmful reversal
        (`_reversals`) at the program head that nobody has queued, unless the proposal is itself the other side of
        a harmful move. None: the proposal still stands."""
        head_config = self.config_at(self.ctx.head_of(self.agent))
        if head_config is None:
            return None
        ev = self.evidence()
        knobs = focused_knobs([k for k in self.knobs if k.name in head_config], self.focus)
        sides = {k.name: self._tried_sides(k, head_config, ev) for k in knobs}
        reversals = [k for k in self._reversals(knobs, head_config, ev, sides) if k.name not in ev.stepping_aside]
        if not reversals or not ev.sigma:
            return None
        if self._reversal_of(proposal, head_config, ev) is not None:
            return None  # it is a reversal itself
        return reversals[0]

    def _reversal_of(self, config: dict[str, Any], centre: dict[str, Any], ev: Evidence) -> Knob | None:
        """The knob when `config` moves it alone from the centre to the other side of a move that made the centre
        worse by over REVERSE_SIGMAS·σ (a reversal, 1. above), else None."""
        moved = [k for k in self.knobs if config.get(k.name) != centre.get(k.name)]
        if len(moved) != 1 or not ev.sigma:
            return None
        k = moved[0]
        side = 1 if to_unit(k, config[k.name]) > to_unit(k, centre[k.name]) else -1
        return k if (self._harm(k, centre, ev, side=-side) or 0.0) > REVERSE_SIGMAS * ev.sigma else None

    def steps_aside_for(self, exp: str, waiting: list[tuple[str, dict[str, Any]]], slots_: int) \
            -> tuple[Knob, str] | None:
        """The reversal (its knob and run) that this agent's waiting run `exp` should step aside for, or None.
        `waiting`: the agents' runs waiting for the slots this one waits for (run and configuration, oldest
        first), `slots_` how many slots those are. A reversal another agent queued behind this run starts in the
        next round only when fewer than `slots_` runs wait ahead of it; otherwise the youngest runs ahead of it
        that are not reversals themselves step aside, as many as it takes, and this run is one of them."""
        head_config = self.config_at(self.ctx.head_of(self.agent))
        if head_config is None or exp not in (e for e, _ in waiting):
            return None
        ev = self.evidence()
        reversals = {e: k for e, config in waiting if (k := self._reversal_of(config, head_config, ev))}
        if exp in reversals:
            return None
        for place, (e, _) in enumerate(waiting):
            if e not in reversals or place < slots_:
                continue
            ahead = [a for a, _ in waiting[:place] if a not in reversals]
            if exp in ahead[max(0, len(ahead) - (place - slots_ + 1)):]:
                return reversals[e], e
        return None

    def waiting_with(self, exp: str) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """The agents' runs waiting for a slot (queued, not leased yet) that could take one of the slots the run
        `exp` waits for, oldest first, with their configurations; and how many slots that run may take."""
        mine = {s.name for s in slots.agent_slots(self.ctx.spec, self.agent)}
        waiting = []
        for r in ledger.experiments(self.paths, kinds=("exp",), verdict="queued"):
            if (self.paths.runs / r["exp"] / "leased").exists() or (r["exp"] != exp and mine.isdisjoint(
                    s.name for s in slots.agent_slots(self.ctx.spec, r["agent"]))):
                continue
            config = self.config_at(r["commit_sha"])
            if config is not None:
                waiting.append((r["exp"], config))
        return waiting, len(mine)

    def withdraw_when_overtaken(self, exp: str, proposal: dict[str, Any], done: threading.Event) -> None:
        """While this agent's run `exp` waits for a slot, every OVERTAKEN_POLL_S: withdraw it (cancelled before
        it starts) once a reversal overtakes it (`overtaken`: the agent's next proposal is that reversal) or it
        should step aside for one another agent queued behind it (`steps_aside_for`)."""
        leased = self.paths.runs / exp / "leased"  # the run has its slot: too late to withdraw
        while not done.wait(OVERTAKEN_POLL_S):
            try:
                with comms.locked(self.paths, "proposals"):  # nobody queues the reversal while this decides
                    if leased.exists():
                        return
                    knob, queued = self.overtaken(proposal), ""
                    if knob is None:
                        behind = self.steps_aside_for(exp, *self.waiting_with(exp))
                        if behind is None:
                            continue
                        knob, queued = behind[0], f" ({behind[1]}, queued behind it)"
                    why = (f"{WITHDRAWN} for the other side of {knob.name}{queued}, which hurt by over "
                           f"{REVERSE_SIGMAS:g}σ moved alone")
                    if not leased.exists() and ledger.replace_verdict(self.paths, exp, "queued", why):
                        self.tell(f"{exp} withdrawn before it started: {knob.name}'s other side comes first")
                    return
            except AutoorgError as exc:
                self.tell(f"(could not check whether {exp} still stands: {exc})")
                return

    def _direction(self, knob: Knob, centre: dict[str, Any], ev: Evidence, untried: set[int] | frozenset[int] =
                   frozenset()) -> int:
        """+1 or -1: towards a better neighbour along this knob when the ledger has one, else the side nobody
        has tried from the centre (`untried`, when it is one side), else a coin flip."""
        base = ev.means.get(config_key(self.knobs, centre))
        if base is not None and self.rng.random() < 0.8:
            u0 = to_unit(knob, centre[knob.name])
            best: tuple[float, int] | None = None
            for key, mean in ev.means.items():
                other = ev.values.get(key)
                if other is None or not self._moved_alone(knob, centre, other):
                    continue
                gain = self.ctx.task.improvement(mean, base)
                side = 1 if to_unit(knob, other[knob.name]) > u0 else -1
                if best is None or gain > best[0]:
                    best = (gain, side)
            if best is not None:
                return best[1] if best[0] > 0 else -best[1]
        if len(untried) == 1:
            return next(iter(untried))
        return 1 if self.rng.random() < 0.5 else -1

    # -- one experiment --------------------------------------------------------------------------------------

    def experiment(self) -> dict[str, Any] | None:
        """Read, propose, edit, run, report. Returns the ledger row (None when nothing could be proposed)."""
        ctx, paths = self.ctx, self.paths
        self.status("working", "reading the org")
        self.read_inbox()
        self.gate_step()
        exp, changes, idea = self.choose_and_queue()
        metric = ctx.task.metric
        done = threading.Event()
        if self.own is not None:
            threading.Thread(target=self.withdraw_when_overtaken, args=(exp, self.own, done), daemon=True).start()
        try:
            self.tell(f"running {exp}")
            row = gate.run_experiment(ctx, exp, say=self.tell)
        except AutoorgError as exc:
            if idea is not None:  # not left claimed forever: closed with why
                comms.finish_idea(paths, self.agent, idea.id, f"could not run it: {exc}")
            raise
        finally:
            done.set()
        if row["verdict"].startswith(WITHDRAWN):
            return row
        for line in gate.answer(ctx, row).splitlines():
            self.say(line)
        value = f"{row['metric']:.6g}" if row["metric"] is not None else "-"
        delta = f" ({row['delta']:+.4g} vs head)" if row["delta"] is not None else ""
        result = f"{exp} {', '.join(changes)}: {metric} {value}{delta} → {row['verdict']}"
        try:
            if idea is not None:
                comms.finish_idea(paths, self.agent, idea.id, result)
            if self.shared:
                comms.post_board(paths, self.agent, result)
        except AutoorgError as exc:
            self.tell(f"(could not post the result: {exc})")
        if row["verdict"] in ("candidate",):
            self.misses = 0
        else:
            self.misses += 1
            if self.misses % SHRINK_AFTER == 0:
                self.step = max(MIN_STEP, self.step * SHRINK)
                self.tell(f"{self.misses} experiments without a win: narrowing my step to {self.step:.2f}")
        self.gate_step()
        return row

    def choose_and_queue(self) -> tuple[str, list[str], comms.Idea | None]:
        """The next experiment, committed and queued: its id, its changes (`KNOB=value`) and the idea it runs
        (None: its own proposal). One agent at a time reads the org, chooses and queues, so each sees what the
        others queued: at `up`, four agents proposing at once moved the same knob the same way twice in the org's
        first round (benchmarks/first_promotion.py --timeline)."""
        with comms.locked(self.paths, "proposals"):
            return self._choose_and_queue()

    def _choose_and_queue(self) -> tuple[str, list[str], comms.Idea | None]:
        ctx, paths = self.ctx, self.paths
        head = ctx.head_of(self.agent)  # its island's head on an island
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
        idea: comms.Idea | None = None
        self.own = None
        while self.todo and config_key(self.knobs, {**head_config, **self.todo[0]}) in ev.tried:
            self.todo.pop(0)  # someone ran that ablation already
        if self.todo:
            proposal, why = {**head_config, **self.todo.pop(0)}, "an ablation the critic asked for"
        elif self.role == "worker" and self.shared:
            proposal, why, idea = self.next_idea(head_config, ev, stats.mean)
        elif (claimed := self.claim_idea()) is not None:  # an idea a person (or a chief) queued
            idea, values = claimed
            proposal, why = {**head_config, **values}, f"idea {idea.id}: " + ", ".join(
                f"{name}={value!r}" for name, value in values.items())
        else:
            proposal, why = self.next_config(head_config, ev, stats.mean)
            self.own = proposal if self.search is None else None
        if proposal == head_config:  # an ablation or idea the head already holds
            if idea is not None:
                comms.finish_idea(self.paths, self.agent, idea.id, "the program head already has this")
                idea = None
            proposal, why = self.next_config(head_config, ev, stats.mean)
            self.own = proposal if self.search is None else None
        self.tell(f"idea: {why}")
        worktree = ctx.worktree(self.agent)
        workspace.checkout_paths(worktree, head, ctx.task.editable)
        for file in sorted({k.file for k in self.knobs}):
            path = worktree / file
            path.write_text(write_knobs(path.read_text(), [k for k in self.knobs if k.file == file], proposal))
        changes = [f"{k.name}={format_value(k, proposal[k.name])}" for k in self.knobs
                   if k.name in proposal and proposal[k.name] != head_config.get(k.name)]
        try:
            exp = experiments.queue_experiment(ctx, self.agent, "heuristic: " + ", ".join(changes),
                                                spend=usage.spend(self.paths, self.agent))
        except AutoorgError as exc:
            if idea is not None:  # not left claimed forever: closed with why
                comms.finish_idea(paths, self.agent, idea.id, f"could not run it: {exc}")
            raise
        return exp, changes, idea

    # -- the idea queue (workers) ---------------------------------------------------------------------------

    def next_idea(self, head: dict[str, Any], ev: Evidence, head_mean: float | None,
                  ) -> tuple[dict[str, Any], str, comms.Idea | None]:
        """Top the queue up with an idea of its own when it runs short, then claim the oldest idea it can run;
        an idea whose configuration was already run is closed as a duplicate. Falls back to its own proposal."""
        paths = self.paths
        queued = comms.list_ideas(paths, "queue")
        if len(queued) < QUEUE_LOW:
            self.add_own_idea(head, ev, head_mean)
            queued = comms.list_ideas(paths, "queue")
        for idea in queued:
            wanted = parse_assignments(idea.title, self.knobs)
            if not wanted:
                continue  # free text: for an agent that can read it
            try:
                comms.claim_idea(paths, self.agent, idea.id)
            except AutoorgError:
                continue  # another worker won it
            proposal = {**head, **wanted}
            if config_key(self.knobs, proposal) in ev.tried or proposal == head:
                comms.finish_idea(paths, self.agent, idea.id, "duplicate: this configuration was already run")
                self.tell(f"idea {idea.id} ({idea.title}) was already run: closed as a duplicate")
                continue
            return proposal, f"idea {idea.id} from {idea.author}: {idea.title}", idea
        proposal, why = self.propose(head, ev, head_mean)
        return proposal, why, None

    def add_own_idea(self, head: dict[str, Any], ev: Evidence, head_mean: float | None) -> str | None:
        """Queue one proposal as an idea unless a similar one is queued, claimed or done."""
        try:
            proposal, why = self.propose(head, ev, head_mean)
        except AutoorgError:
            return None
        changed = {k: v for k, v in proposal.items() if head.get(k) != v}
        title = idea_title(self.knobs, changed)
        idea_id = comms.add_idea_unless(self.paths, self.agent, title, why,
                                        similar=lambda a, b: same_idea(a, b, self.knobs))
        if idea_id is None:
            self.tell(f"not queuing '{title}': a similar idea is already in the queue or done")
            return None
        self.tell(f"queued idea {idea_id}: {title}")
        return idea_id

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
                done += not (row is not None and row["verdict"].startswith(WITHDRAWN))
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
