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
from autoorg.spec.loader import check_keys, line_of

PROCESS_KEYS = {
    "standup": {"every": "interval such as 30m, 2h, 90s"},
    "gate": {"repeats": "most same-seed pairs (head, candidate) per verification", "z": "one-sided z for the noise band",
             "floor": "minimum band as a fraction of the metric"},
    "baseline": {"repeats": "runs of the program head when the org starts"},
    "restart": {"limit": "restarts of a crashed agent before it is left crashed (default 3)",
                "backoff": "wait before the first restart, doubled each time (default 2s)"},
    "review": {"role": "the role whose agents must approve a candidate before the gate spends verification "
                       "compute on it (autoorg review approve|refuse)"},
    "comms": {"shared": "false: agents work alone, sharing only the ledger (no messages between agents, no "
                        "board posts, no ideas added to the queue)"},
}


@dataclass(frozen=True)
class Standup:
    every: float | None = None  # seconds between standups; None: no standups


# Gate and baseline defaults were chosen by simulating the whole procedure in a fresh org (σ known only from the
# baseline): a 3σ win is promoted ~96% of the time, a no-effect change ~0.1% (~0.4% of those the screen lets
# through). R = K also means a promoted head already has K runs of its own: no new baseline after a promotion.
@dataclass(frozen=True)
class Gate:
    repeats: int = 8  # most same-seed pairs per verification (R)
    z: float = 2.9  # one-sided z of the promotion test
    floor: float = 0.0001  # smallest band, as a fraction of the head's mean


@dataclass(frozen=True)
class Baseline:
    repeats: int = 8  # runs of a program head before it is judged against (K)


@dataclass(frozen=True)
class Restart:
    limit: int = 3  # restarts of a crashed agent before it is left crashed
    backoff: float = 2.0  # seconds before the first restart, doubled each time


@dataclass(frozen=True)
class Review:
    role: str | None = None  # None: candidates go to verification unreviewed


@dataclass(frozen=True)
class Comms:
    shared: bool = True  # False: agents neither message each other nor post to the board or add ideas


@dataclass(frozen=True)
class Processes:
    standup: Standup = field(default_factory=Standup)
    gate: Gate = field(default_factory=Gate)
    baseline: Baseline = field(default_factory=Baseline)
    restart: Restart = field(default_factory=Restart)
    review: Review = field(default_factory=Review)
    comms: Comms = field(default_factory=Comms)

    def to_dict(self) -> dict[str, Any]:
        """Every process with its defaults filled in; `load` of this gives the same object back."""
        out: dict[str, Any] = {}
        if self.standup.every is not None:
            out["standup"] = {"every": format_interval(self.standup.every)}
        out["gate"] = {"repeats": self.gate.repeats, "z": self.gate.z, "floor": self.gate.floor}
        out["baseline"] = {"repeats": self.baseline.repeats}
        out["restart"] = {"limit": self.restart.limit, "backoff": format_interval(self.restart.backoff)}
        if self.review.role is not None:
            out["review"] = {"role": self.review.role}
        out["comms"] = {"shared": self.comms.shared}
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


def _whole(body: Any, key: str, default: int, minimum: int, *, source: str, where: str) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}.{key} must be a whole number >= {minimum}, got {value!r}", source=source,
                        line=line_of(body, key))
    return value


def _real(body: Any, key: str, default: float, *, positive: bool, source: str, where: str) -> float:
    value = body.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise SpecError(f"{where}.{key} must be a number {bound}, got {value!r}", source=source,
                        line=line_of(body, key))
    return float(value)


def _interval(body: Any, key: str, default: float | None, *, source: str) -> float | None:
    if key not in body or body[key] is None:
        return default
    return parse_interval(body[key], source=source, line=line_of(body, key))


def _review(body: Any, roles: set[str], *, source: str) -> Review:
    if "role" not in body:
        return Review()
    role = body["role"]
    if role not in roles:
        close = difflib.get_close_matches(str(role), sorted(roles), n=1)
        raise SpecError(f"processes.review.role '{role}': no agent of this org has that role, so no candidate "
                        "would ever be verified", source=source, line=line_of(body, "role"),
                        hint=f"did you mean '{close[0]}'?" if close else "roles here: " + ", ".join(sorted(roles)))
    return Review(role=str(role))


def _flag(body: Any, key: str, default: bool, *, source: str, where: str) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{where}.{key} must be true or false, got {value!r}", source=source,
                        line=line_of(body, key))
    return value


def build_processes(raw: Any, *, source: str, roles: set[str] | None = None) -> Processes:
    """The org file's `processes:` mapping (or None) → a validated Processes; errors name file:line. `roles`:
    the roles the org's agents have (a review must name one of them)."""
    if raw is None:
        return Processes()
    check_keys(raw, PROCESS_KEYS, source=source, where="processes")
    bodies: dict[str, Any] = {}
    for name in PROCESS_KEYS:
        body = raw.get(name) or {}
        check_keys(body, PROCESS_KEYS[name], source=source, where=f"processes.{name}")
        bodies[name] = body
    gate, baseline, restart = bodies["gate"], bodies["baseline"], bodies["restart"]
    return Processes(
        standup=Standup(every=_interval(bodies["standup"], "every", None, source=source)),
        gate=Gate(repeats=_whole(gate, "repeats", Gate.repeats, 1, source=source, where="processes.gate"),
                  z=_real(gate, "z", Gate.z, positive=True, source=source, where="processes.gate"),
                  floor=_real(gate, "floor", Gate.floor, positive=False, source=source, where="processes.gate")),
        baseline=Baseline(repeats=_whole(baseline, "repeats", Baseline.repeats, 2, source=source,
                                         where="processes.baseline")),
        restart=Restart(limit=_whole(restart, "limit", Restart.limit, 0, source=source, where="processes.restart"),
                        backoff=_interval(restart, "backoff", Restart.backoff, source=source) or 0.0),
        review=_review(bodies["review"], roles or set(), source=source),
        comms=Comms(shared=_flag(bodies["comms"], "shared", True, source=source, where="processes.comms")),
    )
