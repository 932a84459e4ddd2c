"""An org's processes (`processes:` in the org file), typed and validated when the org is loaded.

Every value is checked here, with the file and line, so the daemon and the gate only ever see valid numbers.
The resolved org.yaml writes every process out with its defaults filled in, and reads back to the same object.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from autoorg.errors import SpecError
from autoorg.spec.loader import line_of

PROCESS_KEYS: dict[str, Any] = {
    "standup": {"every": "interval such as 30m, 2h, 90s"},
    "gate": {"repeats": "most same-seed pairs (head, candidate) per verification", "z": "one-sided z for the noise band",
             "floor": "minimum band as a fraction of the metric",
             "baselines": "runs of a program head while the org's σ is new (then half as many; also "
                          "processes.baseline.repeats)"},
    "baseline": {"repeats": "runs of the program head when the org starts (kept: gate.baselines says the same)"},
    "restart": {"limit": "restarts of a crashed agent before it is left crashed (default 3)",
                "backoff": "wait before the first restart, doubled each time (default 2s)",
                "exited": "also restart an agent that exited cleanly (default false)"},
    "stop": "a list of rules, each one of max_experiments, max_tokens, max_cost_usd, plateau, crash_rate",
    "review": {"role": "the role whose agents must approve a candidate before the gate spends verification "
                       "compute on it (autoorg review approve|refuse)"},
    "migrate": {"every": "island promotions between migrations: then the best island's head replaces the "
                         "worst's (default 2; only with agents on islands)"},
    "comms": {"shared": "false: agents work alone, sharing only the ledger (no messages between agents, no "
                        "board posts, no ideas added to the queue)"},
}
# What a stop rule measures: its key in the org file -> what its limit counts
STOP_MEASURES = {
    "max_experiments": "experiments asked for (kind exp)",
    "max_tokens": "model tokens used (input, cached, cache writes and output)",
    "max_cost_usd": "model cost in US dollars",
    "plateau": "finished experiments since the latest promotion",
    "crash_rate": "share of the latest `window` finished experiments that crashed (fires when above)",
}
STOP_RULE_KEYS = {**STOP_MEASURES, "per": "org (default) or agent: count the org's total or each agent's own",
                  "action": "stop (no new experiments are accepted; default) or pause (agents held as `autoorg "
                            "pause` does)", "window": "crash_rate: how many finished experiments (default 10)"}
STOP_ACTIONS = ("stop", "pause")


@dataclass(frozen=True)
class Standup:
    every: float | None = None  # seconds between standups; None: no standups


# Gate and baseline defaults were chosen by simulating the whole procedure in a fresh org (σ known only from the
# baseline, then pooled with the head's arms of the pairs): with K = 4 a no-effect change is promoted 0.14% of the
# time (α = 0.19% at z 2.9: the t quantiles carry σ's few dof), a 3σ win 92% (pairs sharing no noise) to 100%
# (sharing 90%, as training's seed noise does), over 0.5 more pairs per decision than K = 8 spends; K = 8's four
# extra runs before anything is judged made a fresh org's first promotion ~40% later (bench/sim.py, 4 agents on
# 2 slots: median 12.5 run lengths against 9, benchmarks/sim_baselines.py). tests/test_gate_stats.py keeps the rates.
@dataclass(frozen=True)
class Gate:
    repeats: int = 8  # most same-seed pairs per verification (R)
    z: float = 2.9  # one-sided z of the promotion test
    floor: float = 0.0001  # smallest band, as a fraction of the head's mean


@dataclass(frozen=True)
class Baseline:
    repeats: int = 4  # runs of a program head before it is judged against (K)


@dataclass(frozen=True)
class Restart:
    limit: int = 3  # restarts of a crashed agent before it is left crashed
    backoff: float = 2.0  # seconds before the first restart, doubled each time
    exited: bool = False  # restart an agent that exited with status 0 too (else it is left stopped)


@dataclass(frozen=True)
class Review:
    role: str | None = None  # agents of this role approve candidates before verification; None: no review


@dataclass(frozen=True)
class Migrate:
    every: int | None = None  # island promotions between migrations; None: the org has no islands


MIGRATE_EVERY = 2  # the default of an org with islands


@dataclass(frozen=True)
class Comms:
    shared: bool = True  # False: agents share only the ledger (no messages between agents, board posts, ideas)


@dataclass(frozen=True)
class StopRule:
    """One `processes.stop` rule: when `measure` reaches `limit` (crash_rate: goes above it), do `action`."""

    measure: str  # a key of STOP_MEASURES
    limit: float
    per: str = "org"  # org | agent
    action: str = "stop"  # stop | pause
    window: int = 10  # crash_rate only

    @property
    def name(self) -> str:
        """How people see the rule: `max_experiments 50 per agent`, `crash_rate 0.5 of 10`."""
        limit = f"{self.limit:g}"
        text = f"{self.measure} {limit}" + (f" of {self.window}" if self.measure == "crash_rate" else "")
        return text + (" per agent" if self.per == "agent" else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.measure: int(self.limit) if self.limit == int(self.limit) and
                               self.measure != "crash_rate" and self.measure != "max_cost_usd" else self.limit,
                               "per": self.per, "action": self.action}
        if self.measure == "crash_rate":
            out["window"] = self.window
        return out


@dataclass(frozen=True)
class Processes:
    standup: Standup = field(default_factory=Standup)
    gate: Gate = field(default_factory=Gate)
    baseline: Baseline = field(default_factory=Baseline)
    restart: Restart = field(default_factory=Restart)
    stop: tuple[StopRule, ...] = ()
    review: Review = field(default_factory=Review)
    comms: Comms = field(default_factory=Comms)
    migrate: Migrate = field(default_factory=Migrate)

    def to_dict(self) -> dict[str, Any]:
        """Every process with its defaults filled in; `load` of this gives the same object back."""
        out: dict[str, Any] = {}
        if self.standup.every is not None:
            out["standup"] = {"every": format_interval(self.standup.every)}
        out["gate"] = {"repeats": self.gate.repeats, "z": self.gate.z, "floor": self.gate.floor,
                       "baselines": self.baseline.repeats}
        out["restart"] = {"limit": self.restart.limit, "backoff": format_interval(self.restart.backoff),
                          "exited": self.restart.exited}
        if self.stop:
            out["stop"] = [rule.to_dict() for rule in self.stop]
        if self.review.role is not None:
            out["review"] = {"role": self.review.role}
        out["comms"] = {"shared": self.comms.shared}
        if self.migrate.every is not None:
            out["migrate"] = {"every": self.migrate.every}
        return out


# ---------------------------------------------------------------------------------------------------------------
# Intervals


def parse_interval(value: Any, *, source: str = "", line: int | None = None) -> float:
    """`30m`, `2h`, `90s` or a number of seconds → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if isinstance(value, bool) or not m:
        raise SpecError(f"bad interval '{value}'", source=source, line=line, hint="use 90s, 30m or 2h")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def format_interval(seconds: float) -> str:
    """Seconds → the shortest of `2h`, `30m`, `90s`, `0.2s` that parse_interval reads back exactly."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if float(f"{seconds:g}") == seconds else f"{seconds!r}s"


# ---------------------------------------------------------------------------------------------------------------
# Building from the org file


class _Problems:
    """Every problem of a `processes:` mapping, one line each: the file is checked whole, not to its first error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[tuple[int, str]] = []  # (line, the problem's one line)

    def add(self, message: str, mapping: Any, key: str | None = None, hint: str | None = None) -> None:
        line = line_of(mapping, key)
        self.found.append((line or 0, str(SpecError(message, source=self.source, line=line, hint=hint))))

    @property
    def lines(self) -> list[str]:
        """In the file's order."""
        return [text for _, text in sorted(self.found, key=lambda found: found[0])]

    def whole(self, body: Any, key: str, default: int, minimum: int, where: str) -> int:
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(f"{where}.{key} must be a whole number >= {minimum}, got {value!r}", body, key)
            return default
        return value

    def real(self, body: Any, key: str, default: float, *, positive: bool, where: str) -> float:
        value = body.get(key, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (value > 0 if positive else value >= 0)
        if not ok:
            self.add(f"{where}.{key} must be a number {'> 0' if positive else '>= 0'}, got {value!r}", body, key)
            return default
        return float(value)

    def interval(self, body: Any, key: str, default: float | None) -> float | None:
        if key not in body or body[key] is None:
            return default
        try:
            return parse_interval(body[key], source=self.source, line=line_of(body, key))
        except SpecError as exc:
            self.found.append((line_of(body, key) or 0, str(exc)))
            return default

    def flag(self, body: Any, key: str, default: bool, where: str) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{where}.{key} must be true or false, got {value!r}", body, key)
            return default
        return value


def _unknown_keys(problems: _Problems, mapping: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    """Every unknown key of a mapping, each with its line and did-you-mean (check_keys names only the first)."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(allowed)
            problems.add(f"unknown key '{key}' in {where}", mapping, str(key), hint)


def _mapping(problems: _Problems, raw: Any, allowed: dict[str, Any], where: str, *, parent: Any = None,
             key: str | None = None) -> dict[str, Any]:
    """A mapping with only known keys (unknown ones reported and dropped); anything else reported as {}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(f"{where} must be a mapping, got {type(raw).__name__}", parent if parent is not None else raw,
                     key)
        return {}
    _unknown_keys(problems, raw, allowed, where)
    return raw


def _stop_rule(problems: _Problems, raw: Any, where: str, parent: Any) -> StopRule | None:
    body = _mapping(problems, raw, STOP_RULE_KEYS, where, parent=parent, key="stop")  # a list item has no line
    if not isinstance(raw, dict):
        return None
    measures = [k for k in STOP_MEASURES if k in body]
    if len(measures) != 1:
        what = "none" if not measures else ", ".join(measures)
        problems.add(f"{where} needs exactly one of {', '.join(STOP_MEASURES)} (got {what})", body)
        return None
    measure = measures[0]
    value = body[measure]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if measure == "crash_rate":
        ok = number and 0 <= value < 1
        need = "a fraction >= 0 and < 1 (0.5: more than half crashed)"
    elif measure == "max_cost_usd":
        ok = number and value > 0
        need = "a number of dollars > 0"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        need = "a whole number >= 1"
    if not ok:
        problems.add(f"{where}.{measure} must be {need}, got {value!r}", body, measure)
    per = body.get("per", "org")
    if per not in ("org", "agent"):
        problems.add(f"{where}.per must be org or agent, got {per!r}", body, "per")
    elif per == "agent" and measure == "plateau":
        problems.add(f"{where}: a plateau counts the org's promotions; per: agent is not supported", body, "per")
    action = body.get("action", "stop")
    if action not in STOP_ACTIONS:
        close = difflib.get_close_matches(str(action), STOP_ACTIONS, n=1, cutoff=0.5)
        problems.add(f"{where}.action must be stop or pause, got {action!r}", body, "action",
                     f"did you mean '{close[0]}'?" if close else None)
    if "window" in body and measure != "crash_rate":
        problems.add(f"{where}.window applies to crash_rate only", body, "window")
    window = problems.whole(body, "window", StopRule.window, 1, where)
    if not ok or per not in ("org", "agent") or action not in STOP_ACTIONS:
        return None
    return StopRule(measure=measure, limit=float(value), per=str(per), action=str(action), window=window)


def _review(problems: _Problems, body: Any, roles: set[str]) -> Review:
    if "role" not in body:
        return Review()
    role = body["role"]
    if role not in roles:
        close = difflib.get_close_matches(str(role), sorted(roles), n=1)
        problems.add(f"processes.review.role '{role}': no agent of this org has that role, so no candidate would "
                     "ever be verified", body, "role",
                     f"did you mean '{close[0]}'?" if close else "roles here: " + ", ".join(sorted(roles)))
        return Review()
    return Review(role=str(role))


def _migrate(problems: _Problems, body: Any, islands: set[str] | None) -> Migrate:
    if islands is not None and not islands:
        if body:
            problems.add("processes.migrate: no agent is on an island, so there is nothing to migrate", body,
                         next(iter(body)), "give agents island: NAME, or remove processes.migrate")
        return Migrate()
    if islands is None and not body:
        return Migrate()
    return Migrate(every=problems.whole(body, "every", MIGRATE_EVERY, 1, "processes.migrate"))


def build_processes(raw: Any, *, source: str, roles: set[str] | None = None,
                    islands: set[str] | None = None) -> Processes:
    """The org file's `processes:` mapping (or None) → a validated Processes. Every problem is reported, one line
    each naming file:line, in one SpecError. `roles`: the roles the org's agents have (a review must name one of
    them), `islands` their islands (migration needs some); None when there are no agents to check against (a
    bench suite's shared processes)."""
    if raw is None:
        raw = {}
    problems = _Problems(source)
    top = _mapping(problems, raw, PROCESS_KEYS, "processes")
    bodies = {name: _mapping(problems, top.get(name), PROCESS_KEYS[name], f"processes.{name}", parent=top,
                             key=name)
              for name in ("standup", "gate", "baseline", "restart", "review", "comms", "migrate")}
    gate, baseline, restart = bodies["gate"], bodies["baseline"], bodies["restart"]
    repeats = problems.whole(baseline, "repeats", Baseline.repeats, 2, "processes.baseline")
    if "baselines" in gate:
        baselines = problems.whole(gate, "baselines", Baseline.repeats, 2, "processes.gate")
        if "repeats" in baseline and baselines != repeats:
            problems.add(f"processes.gate.baselines ({baselines}) and processes.baseline.repeats ({repeats}) "
                         "disagree", gate, "baselines", "keep gate.baselines only")
        repeats = baselines
    rules: list[StopRule] = []
    stop = top.get("stop")
    if stop is not None and not isinstance(stop, list):
        problems.add(f"processes.stop must be a list of rules, got {type(stop).__name__}", top, "stop",
                     "e.g. stop: [{max_experiments: 100}, {plateau: 20, action: pause}]")
    for i, item in enumerate(stop if isinstance(stop, list) else []):
        rule = _stop_rule(problems, item, f"processes.stop[{i}]", top if not isinstance(item, dict) else item)
        if rule is not None:
            rules.append(rule)
    processes = Processes(
        standup=Standup(every=problems.interval(bodies["standup"], "every", None)),
        gate=Gate(repeats=problems.whole(gate, "repeats", Gate.repeats, 1, "processes.gate"),
                  z=problems.real(gate, "z", Gate.z, positive=True, where="processes.gate"),
                  floor=problems.real(gate, "floor", Gate.floor, positive=False, where="processes.gate")),
        baseline=Baseline(repeats=repeats),
        restart=Restart(limit=problems.whole(restart, "limit", Restart.limit, 0, "processes.restart"),
                        backoff=problems.interval(restart, "backoff", Restart.backoff) or 0.0,
                        exited=problems.flag(restart, "exited", Restart.exited, "processes.restart")),
        stop=tuple(rules),
        review=_review(problems, bodies["review"], roles) if roles is not None else
        Review(role=str(bodies["review"]["role"]) if "role" in bodies["review"] else None),
        comms=Comms(shared=problems.flag(bodies["comms"], "shared", Comms.shared, "processes.comms")),
        migrate=_migrate(problems, bodies["migrate"], islands),
    )
    if problems.found:
        raise SpecError("\n".join(problems.lines))
    return processes
