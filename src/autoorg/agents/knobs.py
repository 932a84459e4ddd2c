"""The task's knobs in the editable files: reading and rewriting `NAME = value` lines, and each knob's unit
range (log scale where the knob says so; a choice by whole positions), shared by every offline search strategy."""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from autoorg.spec import Knob

ROUND = 0.01  # configurations closer than this in every knob's unit range are the same one


# ---------------------------------------------------------------------------------------------------------------
# Knobs in a file


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
