"""A bench suite: which orgs, on which tasks, how many repeats, at what compute each (`autoorg bench SUITE.yaml`).

    name: topologies                 # default: the file's stem
    tasks: [synthetic]               # task names (as `up --task`) or paths, found from the repository
    repeats: 5
    budget: {slot_minutes: 6}        # compute each org gets per repeat: its runs' wall time x the cores or GPUs
                                     # they held (slot_minutes or slot_hours)
    limit_minutes: 20                # wall-clock cap of one org's repeat (default: 4x the budget, at least 5)
    cores: 2                         # one-core CPU slots each org gets: its share of the machine (default 2)
    parallel: 2                      # orgs run at once (default: the cores there are // cores, at least 1)
    backend: heuristic               # optional: every agent's backend (default: each org's own)
    baselines: [keep, random, tpe]   # the default: autoresearch's loop, random search, Optuna's TPE
    references: {synthetic: 2.31}    # optional: the best known metric per task, kept out of the agents' view
    processes: {gate: {repeats: 4}}  # optional: org processes every org runs with (same verification for all)
    simulate: false                  # true: every org on a simulated clock (bench/sim.py; the synthetic task):
                                     # orgs of hundreds of agents in seconds, budget in simulated slot time
    orgs:
      - {name: solo, org: 1xcpu}     # org: a preset, a topology name or an org YAML (relative to this file)
      - {name: team, org: 4xcpu}

Baselines are orgs of offline agents (`backend: heuristic`, their `model:` the strategy) added to every suite, so
every report has them beside the orgs compared: `keep` is one agent (autoresearch's loop), `random` and `tpe` one
agent per core of the org's share (`cores`), each proposing from the whole org's evidence: a parallel sweep.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoorg.agents.search import STRATEGIES
from autoorg.errors import SpecError
from autoorg.spec.loader import check_keys, line_of, read_yaml
from autoorg.spec.processes import build_processes

SUITE_KEYS = {"name": "the suite's name", "tasks": "list of task names or paths", "repeats": "a whole number >= 1",
              "budget": "{slot_minutes: N} or {slot_hours: N}", "limit_minutes": "minutes", "cores": "cores per org",
              "parallel": "orgs at once", "backend": "every agent's backend", "baselines": "list of strategies",
              "references": "{task: metric}", "simulate": "true: a simulated clock (the synthetic task)",
              "processes": "gate and baseline settings for every org",
              "orgs": "list of {name, org}"}
ORG_KEYS = {"name": "a label in the report", "org": "a preset, topology or org YAML", "backend": "every agent's",
            "model": "every agent's model"}
BASELINES = {"keep": "autoresearch loop", "random": "random search", "tpe": "Optuna TPE"}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


@dataclass(frozen=True)
class BenchOrg:
    name: str
    target: str  # a preset or topology name, or an absolute path to an org YAML
    backend: str | None = None
    model: str | None = None
    baseline: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    tasks: list[str]
    repeats: int
    budget_s: float  # slot-seconds per org per repeat
    limit_s: float
    cores: int
    parallel: int
    orgs: list[BenchOrg]
    references: dict[str, float] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    simulate: bool = False

    def cells(self) -> list[tuple[BenchOrg, str, int]]:
        """Every (org, task, repeat), repeats interleaved so a partial bench still compares every org."""
        return [(org, task, r) for r in range(1, self.repeats + 1) for task in self.tasks for org in self.orgs]


def _number(raw: Any, key: str, *, source: str, line: int | None, minimum: float, whole: bool = False) -> float:
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw == raw and raw not in (float("inf"),)
    if not ok or raw < minimum or (whole and raw != int(raw)):
        kind = "a whole number" if whole else "a number"
        raise SpecError(f"'{key}' must be {kind} >= {minimum:g}, not {raw!r}", source=source, line=line)
    return float(raw)


def load_suite(path: Path) -> Suite:
    """Read and check a suite: every error names the file and line."""
    path = Path(path).resolve()
    raw = read_yaml(path)
    source = str(path)
    check_keys(raw, SUITE_KEYS, source=source, where="the suite")
    for key in ("tasks", "orgs", "budget"):
        if key not in raw:
            raise SpecError(f"the suite is missing '{key}'", source=source, hint=SUITE_KEYS[key])
    tasks = raw["tasks"]
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise SpecError("'tasks' must be a list of task names or paths", source=source, line=line_of(raw, "tasks"))
    budget = raw["budget"]
    check_keys(budget, {"slot_minutes": "", "slot_hours": ""}, source=source, where="budget")
    if len(budget) != 1:
        raise SpecError("budget takes one of slot_minutes, slot_hours", source=source, line=line_of(raw, "budget"))
    (unit, value), = budget.items()
    amount = _number(value, f"budget.{unit}", source=source, line=line_of(raw, "budget"), minimum=1e-6)
    budget_s = amount * (60.0 if unit == "slot_minutes" else 3600.0)
    cores = int(_number(raw.get("cores", 2), "cores", source=source, line=line_of(raw, "cores"), minimum=1,
                        whole=True))
    available = len(os.sched_getaffinity(0))
    parallel = int(_number(raw.get("parallel", max(1, available // cores)), "parallel", source=source,
                           line=line_of(raw, "parallel"), minimum=1, whole=True))
    limit_s = 60.0 * _number(raw.get("limit_minutes", max(5.0, 4 * budget_s / 60 / cores)), "limit_minutes",
                             source=source, line=line_of(raw, "limit_minutes"), minimum=0.1)
    repeats = int(_number(raw.get("repeats", 3), "repeats", source=source, line=line_of(raw, "repeats"), minimum=1,
                          whole=True))
    backend = raw.get("backend")
    orgs = [_org(entry, path, backend, source) for entry in _list(raw, "orgs", source)]
    baselines = raw.get("baselines", list(BASELINES))
    if not isinstance(baselines, list) or any(b not in BASELINES for b in baselines):
        raise SpecError(f"'baselines' lists strategies from {', '.join(BASELINES)}; got {baselines!r}",
                        source=source, line=line_of(raw, "baselines"))
    # autoresearch's loop is one agent by definition; the searches run one trial per slot, as a sweep would
    orgs += [BenchOrg(name=b, target="1xcpu" if b == "keep" else f"{int(cores)}xcpu", backend="heuristic", model=b,
                      baseline=True) for b in baselines]
    names = [o.name for o in orgs]
    for name in names:
        if names.count(name) > 1:
            raise SpecError(f"two orgs are called '{name}' (the baselines are {', '.join(baselines)})",
                            source=source, line=line_of(raw, "orgs"))
    references = raw.get("references", {})
    if not isinstance(references, dict):
        raise SpecError("'references' maps a task to its best known metric", source=source,
                        line=line_of(raw, "references"))
    refs = {str(t): _number(v, f"references.{t}", source=source, line=line_of(references, str(t)),
                            minimum=float("-inf")) for t, v in references.items()}
    processes = raw.get("processes") or {}
    if not isinstance(processes, dict):
        raise SpecError("'processes' must be a mapping, as in an org YAML", source=source,
                        line=line_of(raw, "processes"))
    build_processes(processes, source=source)  # checked now, with the org spec's own rules and lines
    name = str(raw.get("name", path.stem))
    if not NAME.match(name.lower()):
        raise SpecError(f"suite name '{name}' must be letters, digits, - and _", source=source,
                        line=line_of(raw, "name"))
    return Suite(name=name.lower(), path=path, tasks=list(tasks), repeats=repeats, budget_s=budget_s,
                 limit_s=limit_s, cores=cores, parallel=parallel, orgs=orgs, references=refs,
                 processes=_plain(processes), simulate=_flag(raw, "simulate", source))


def _flag(raw: Any, key: str, source: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"'{key}' must be true or false, not {value!r}", source=source, line=line_of(raw, key))
    return value


def _plain(value: Any) -> Any:
    """The loader's line-keeping mappings as plain dicts (to write into an org YAML)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _list(raw: Any, key: str, source: str) -> list[Any]:
    value = raw[key]
    if not isinstance(value, list) or not value:
        raise SpecError(f"'{key}' must be a non-empty list", source=source, line=line_of(raw, key))
    return value


def _org(entry: Any, suite_path: Path, backend: Any, source: str) -> BenchOrg:
    check_keys(entry, ORG_KEYS, source=source, where="an org")
    line = line_of(entry)
    name, target = entry.get("name"), entry.get("org")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"an org's name must match {NAME.pattern}, not {name!r}", source=source, line=line)
    if not isinstance(target, str) or not target:
        raise SpecError(f"org '{name}' needs `org:` (a preset, a topology or an org YAML)", source=source, line=line)
    if target.endswith((".yaml", ".yml")):
        file = (suite_path.parent / target).resolve()
        if not file.is_file():
            raise SpecError(f"org '{name}': no such org file {file}", source=source, line=line_of(entry, "org"))
        target = str(file)
    model = entry.get("model")
    chosen = entry.get("backend", backend)
    if chosen == "heuristic" and model is not None and model not in STRATEGIES:
        raise SpecError(f"org '{name}': the offline researcher's model is one of {', '.join(STRATEGIES)}",
                        source=source, line=line_of(entry, "model"))
    return BenchOrg(name=name, target=target, backend=chosen, model=model)
