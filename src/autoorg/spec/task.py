"""Task specs: `task.yaml` (editable and protected paths, setup, run commands, metric, budget, knobs)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoorg.errors import SpecError
from autoorg.spec.loader import check_keys, line_of, read_yaml

# ---------------------------------------------------------------------------------------------------------------
# Tasks


HELDOUT_OUT = "{heldout_out}"  # in `evaluate`: where the evaluator writes a gate run's held-out line ('' otherwise)

TASK_KEYS = {
    "name": "task name", "description": "one paragraph for agents",
    "editable": "repo-relative paths agents may change", "protected": "repo-relative paths that must not change",
    "setup": "command run once before experiments (idempotent), e.g. data preparation",
    "run": "slot class (cpu, gpu) -> command; placeholders {python} {budget} {seed} {task_dir} {out}",
    "evaluate": "the protected evaluation command, run after training on its output folder {out}; the metric is "
                "its one final line (without it, training's own final line is the metric: unprotected)",
    "heldout": "an evaluation command on a split agents never see a number for; the gate scores promotions on it "
               "(an `evaluate` command with {heldout_out} scores both in one process: see experiments/measure.py)",
    "hidden": "evaluation-only data: glob patterns under the data cache (AUTOORG_DATA) that a run's training sees "
              "empty (the validation and held-out splits); only the evaluator reads them",
    "metric": "name, direction (minimize | maximize) and the range [lo, hi] a sane value lies in",
    "budget": "slot class -> seconds",
    "grace": "seconds past the budget before a run is killed",
    "startup": "seconds of compute a run may use beyond its budget (start-up, warm-up, evaluation): a number or "
               "slot class -> seconds; default 0",
    "knobs": "what an offline agent may search",
    "noise": "task-specific settings (the synthetic task's sigma)",
}
KNOB_KEYS = {"name": "module-level constant in the file", "file": "repo-relative file (default: first editable)",
             "type": "float | int | choice | bool", "low": "lower bound", "high": "upper bound",
             "log": "search on a log scale", "choices": "values for type choice"}


@dataclass
class Knob:
    name: str
    file: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass
class TaskSpec:
    name: str
    path: Path
    description: str
    editable: list[str]
    protected: list[str]
    run: dict[str, str]
    metric: str
    direction: str
    budget: dict[str, float]
    grace: float = 30.0
    startup: dict[str, float] = field(default_factory=dict)  # slot class -> seconds (absent: 0)
    setup: str | None = None
    knobs: list[Knob] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    evaluate: str | None = None
    heldout: str | None = None
    hidden: list[str] = field(default_factory=list)  # globs under the data cache that only the evaluator reads
    metric_range: tuple[float, float] | None = None

    # The one place that knows which way the metric goes; the gate, the dashboard and the researcher ask here.

    def improvement(self, value: float, reference: float) -> float:
        """How much better value is than reference, in the metric's units (positive = better)."""
        return reference - value if self.direction == "minimize" else value - reference

    def better(self, a: float, b: float) -> bool:
        """Is metric value a better than b?"""
        return self.improvement(a, b) > 0

    @property
    def arrow(self) -> str:
        """↓ for a metric to minimize, ↑ for one to maximize."""
        return "↓" if self.direction == "minimize" else "↑"


def find_task(repo: Path, task: str) -> Path:
    """`nanochat` / `synthetic` → `<repo>/<name>/task.yaml` or `<repo>/examples/<name>/task.yaml`; or a path."""
    given = Path(task)
    # a relative path is the repo's first (an org file's `task:` names the repo's task), then the current folder's
    candidates = ([given] if given.is_absolute() else [Path(repo) / given, given]) \
        if task.endswith((".yaml", ".yml")) or "/" in task else []
    candidates += [Path(repo) / task / "task.yaml", Path(repo) / "examples" / task / "task.yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SpecError(f"no task '{task}' in {repo}",
                    hint="expected <repo>/<task>/task.yaml or <repo>/examples/<task>/task.yaml, or pass a path")


def _startup(raw: dict[str, Any], run: dict[str, Any], source: str) -> dict[str, float]:
    """`startup`: one number for every slot class, or slot class -> seconds; each non-negative."""
    value = raw.get("startup", 0)
    per_class = value if isinstance(value, dict) else {cls: value for cls in run}
    out = {}
    for cls, seconds in per_class.items():
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if cls not in ("cpu", "gpu") or not number or seconds < 0:
            raise SpecError(f"startup {cls}: {seconds!r} must be a non-negative number of seconds for a slot class "
                            "(cpu, gpu)", source=source, line=line_of(raw, "startup"))
        out[str(cls)] = float(seconds)
    return out


def load_task(path: Path) -> TaskSpec:
    raw = read_yaml(path)
    source = str(path)
    check_keys(raw, TASK_KEYS, source=source, where="the task")
    for key in ("name", "editable", "run", "metric", "budget"):
        if key not in raw:
            raise SpecError(f"task is missing '{key}'", source=source, hint=TASK_KEYS[key])
    metric = raw["metric"]
    if isinstance(metric, str):
        metric = {"name": metric, "direction": "minimize"}
    check_keys(metric, {"name": "", "direction": "", "range": ""}, source=source, where="metric")
    direction = metric.get("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        raise SpecError(f"metric direction '{direction}' must be minimize or maximize", source=source,
                        line=line_of(metric, "direction"))
    metric_range = _metric_range(metric.get("range"), source, line_of(metric, "range"))
    if raw.get("heldout") and not raw.get("evaluate"):
        raise SpecError("heldout needs evaluate (both are protected evaluation commands)", source=source,
                        line=line_of(raw, "heldout"))
    if HELDOUT_OUT in str(raw.get("evaluate") or "") and not raw.get("heldout"):
        raise SpecError(f"evaluate uses {HELDOUT_OUT} but the task has no heldout command (the split it scores)",
                        source=source, line=line_of(raw, "evaluate"))
    run = raw["run"]
    if isinstance(run, str):
        run = {"cpu": run, "gpu": run}
    budget = raw["budget"]
    if isinstance(budget, (int, float)):
        budget = {k: budget for k in run}
    for cls in run:
        if cls not in ("cpu", "gpu"):
            raise SpecError(f"run has slot class '{cls}'; use cpu and gpu", source=source, line=line_of(run, cls))
        if cls not in budget or float(budget[cls]) <= 0:
            raise SpecError(f"budget for '{cls}' must be a positive number of seconds", source=source,
                            line=line_of(raw, "budget"))
    editable = [str(p) for p in raw["editable"]]
    knobs = []
    for i, k in enumerate(raw.get("knobs") or []):
        check_keys(k, KNOB_KEYS, source=source, where=f"knobs[{i}]")
        ktype = k.get("type", "float")
        if ktype not in ("float", "int", "choice", "bool"):
            raise SpecError(f"knob '{k.get('name')}': unknown type '{ktype}'", source=source, line=line_of(k))
        if ktype in ("float", "int") and ("low" not in k or "high" not in k):
            raise SpecError(f"knob '{k.get('name')}' needs low and high", source=source, line=line_of(k))
        if ktype == "choice" and not k.get("choices"):
            raise SpecError(f"knob '{k.get('name')}' needs choices", source=source, line=line_of(k))
        knobs.append(Knob(name=str(k["name"]), file=str(k.get("file", editable[0])), type=ktype,
                          low=k.get("low"), high=k.get("high"), log=bool(k.get("log", False)),
                          choices=list(k.get("choices") or [])))
    return TaskSpec(
        name=str(raw["name"]), path=Path(path).resolve(), description=str(raw.get("description", "")).strip(),
        editable=editable, protected=[str(p) for p in raw.get("protected") or []],
        run={str(k): str(v) for k, v in run.items()}, metric=str(metric["name"]), direction=direction,
        budget={str(k): float(v) for k, v in budget.items()}, grace=float(raw.get("grace", 30)),
        startup=_startup(raw, run, source),
        setup=raw.get("setup"), knobs=knobs, noise=dict(raw.get("noise") or {}),
        evaluate=_command(raw, "evaluate", source), heldout=_command(raw, "heldout", source),
        hidden=_hidden(raw, source), metric_range=metric_range,
    )


def _hidden(raw: dict[str, Any], source: str) -> list[str]:
    """`hidden`: relative glob patterns that stay inside the data cache."""
    value = raw.get("hidden") or []
    patterns = value if isinstance(value, list) else [value]
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip() or Path(pattern).is_absolute() \
                or ".." in Path(pattern).parts:
            raise SpecError(f"hidden: {pattern!r} must be a glob pattern relative to the data cache (AUTOORG_DATA), "
                            "e.g. mytask/data/val.bin", source=source, line=line_of(raw, "hidden"))
    return [str(p) for p in patterns]


def _command(raw: dict[str, Any], key: str, source: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{key} must be a command line", source=source, line=line_of(raw, key))
    return value


def _metric_range(value: Any, source: str, line: int | None) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) and value[0] < value[1])
    if not ok:
        raise SpecError(f"metric range must be [lo, hi] with lo < hi, got {value!r}", source=source, line=line)
    return float(value[0]), float(value[1])


# ---------------------------------------------------------------------------------------------------------------
# A new task (`autoorg init`)

_CONSTANT = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)\s*(?::\s*\w+\s*)?=\s*(?P<value>[^#\n]+?)\s*(?:#.*)?$", re.M)


def detect_knobs(text: str, file: str) -> list[Knob]:
    """Module-level UPPER_CASE numeric or boolean constants of a training script, each a knob with a range around
    its value (a float ×/÷10 on a log scale, an int ×/÷2): a starting point for the offline researcher."""
    knobs = []
    for m in _CONSTANT.finditer(text):
        try:
            value = ast.literal_eval(m["value"])
        except (ValueError, SyntaxError):
            continue
        name = m["name"]
        if isinstance(value, bool):
            knobs.append(Knob(name=name, file=file, type="bool"))
        elif isinstance(value, int) and value >= 1:
            knobs.append(Knob(name=name, file=file, type="int", low=max(1, value // 2), high=value * 2))
        elif isinstance(value, float) and value > 0:
            knobs.append(Knob(name=name, file=file, type="float", low=float(f"{value / 10:.4g}"),
                              high=float(f"{value * 10:.4g}"), log=True))
    return knobs


def scaffold_task(*, name: str, train: str, run: str, metric: str, direction: str, budget: float,
                  protected: list[str], knobs: list[Knob]) -> str:
    """The text of a new task.yaml, commented for the person who will edit it; load_task reads it back."""

    def flow(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
        return text.removesuffix("...\n").strip()  # a lone scalar is dumped as a document with an end marker

    knob_lines = []
    for k in knobs:
        entry: dict[str, Any] = {"name": k.name, "type": k.type}
        if k.type in ("float", "int"):
            entry.update(low=k.low, high=k.high)
        if k.log:
            entry["log"] = True
        knob_lines.append(f"  - {flow(entry)}")
    return "\n".join([
        "# The task: what the org may change, how a run is started, and how it is scored.",
        f"name: {flow(name)}",
        "description: >",
        f"  Improve {metric} of {train} within a fixed training budget. (Say here what the model is and what a",
        "  good change looks like: every agent reads this.)",
        "# Paths agents may change; everything else is refused. Protected paths are checked again by the gate.",
        f"editable: {flow([train])}",
        f"protected: {flow(protected)}",
        "# {python} is autoorg's interpreter; {seed} and {budget} (seconds) must be honoured by the script.",
        f"run: {flow(run)}",
        "# The script prints a final line: @metric {\"final\": true, \"" + metric + "\": <value>}",
        f"metric: {flow({'name': metric, 'direction': direction})}",
        f"budget: {budget:g}",
        "grace: 30",
        "# What the offline researcher (backend heuristic) may search: module-level constants of the script.",
        "knobs:" + ("" if knob_lines else " []"),
        *knob_lines,
    ]) + "\n"
