"""One cell of a bench: one org, one task, one repeat, in its own folder, as a headless org.

The org starts from a history-free snapshot of the task (a fresh repository with one commit holding only the task's
folder, less its `reference.yaml`), so nothing an agent can open or `git log` shows the reference or how today's
defaults were tuned. It runs until its runs have used the suite's compute (slot time) or the wall-clock limit, is
stopped like `autoorg down`, and leaves `result.json` with its figures (bench/figures.py). A cell folder without
`result.json` is started again from scratch: that is how a bench resumes.

Run by the bench as `python -m autoorg.bench SUITE OUT ORG TASK REPEAT` (`bench/__main__.py`) in a process pinned to its share of
the cores (CPU slots come from the process's affinity), so orgs running side by side do not share a core.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from autoorg import workspace
from autoorg.agents import search
from autoorg.bench import figures, sim
from autoorg.bench.suite import BenchOrg, Suite, load_suite
from autoorg.clock import iso
from autoorg.errors import AutoorgError, SpecError
from autoorg.experiments import ledger
from autoorg.gate.heads import settings as gate_settings
from autoorg.org import build_org, load_org_target, plan_org, teardown_org
from autoorg.paths import OrgPaths, atomic_write_text, org_paths
from autoorg.spec import TaskSpec, find_task, load_task

TAG = "bench"
POLL_S = 1.0
REFERENCE_FILE = "reference.yaml"  # next to task.yaml: {metric: X}; never copied into a snapshot


def task_slug(task: str) -> str:
    """A task as a folder name: `synthetic`, `examples-synthetic-task-yaml`."""
    return re.sub(r"[^a-z0-9_]+", "-", task.lower()).strip("-") or "task"


def cell_dir(out: Path, org: str, task: str, repeat: int) -> Path:
    return out / "cells" / org / task_slug(task) / f"r{repeat}"


def source_task(repo: Path, task: str) -> tuple[Path, str]:
    """The task's folder in the bench's repository and its path relative to the repository's root."""
    task_file = find_task(repo, task).resolve()
    folder = task_file.parent
    try:
        rel = folder.relative_to(repo.resolve()).as_posix()
    except ValueError:
        rel = folder.name
    return folder, rel


def reference_of(suite: Suite, repo: Path, task: str) -> float | None:
    if task in suite.references:
        return suite.references[task]
    folder, _ = source_task(repo, task)
    file = folder / REFERENCE_FILE
    if not file.is_file():
        return None
    raw = yaml.safe_load(file.read_text())
    value = raw.get("metric") if isinstance(raw, dict) else None
    if not isinstance(value, int | float):
        raise SpecError(f"{file}: `metric:` must be a number (the best known result of the task)")
    return float(value)


def snapshot(repo: Path, task: str, target: Path) -> str:
    """A fresh repository at target holding only the task's folder (one commit, no history); returns the path of
    its task.yaml relative to the snapshot's root, for `up --task`."""
    folder, rel = source_task(repo, task)
    target.mkdir(parents=True)
    shutil.copytree(folder, target / rel, ignore=shutil.ignore_patterns("__pycache__", REFERENCE_FILE, "*.pyc"))
    for args in (("init", "-q", "-b", "main"), ("config", "user.name", "autoorg bench"),
                 ("config", "user.email", "bench@localhost"), ("add", "-A"),
                 ("commit", "-q", "-m", f"task {Path(rel).name}")):
        subprocess.run(["git", *args], cwd=target, check=True, capture_output=True)
    return f"{rel}/task.yaml"


def org_target(org: BenchOrg, suite: Suite, folder: Path, repo: Path, task: str) -> str:
    """What `plan_org` gets: the org as named, or, when the suite sets every agent's model or every org's
    processes, its resolved spec (a preset, topology or file: `load_org_target`) with those written in."""
    if org.model is None and not suite.processes:
        return org.target
    spec = load_org_target(org.target, repo, tag=TAG, task=task, backend=org.backend)
    raw = spec.to_dict()
    if org.model is not None:
        raw["agents"] = [{**a, "model": org.model} for a in raw["agents"]]
    if suite.processes:
        raw["processes"] = merged_processes(raw.get("processes", {}), suite.processes)
    file = folder / "org.yaml"
    file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(file)


def merged_processes(org: dict[str, Any], suite: dict[str, Any]) -> dict[str, Any]:
    """An org's resolved processes with the suite's laid over them, key by key (`baseline.repeats`, the old
    spelling, becomes `gate.baselines`)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in org.items()}
    for key, value in suite.items():
        if key == "baseline" and isinstance(value, dict) and "repeats" in value:
            out.setdefault("gate", {})["baselines"] = value["repeats"]
            out.pop("baseline", None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


class Cell:
    def __init__(self, suite: Suite, out: Path, org: BenchOrg, task: str, repeat: int) -> None:
        self.suite, self.org, self.task, self.repeat = suite, org, task, repeat
        self.folder = cell_dir(out, org.name, task, repeat)
        self.source = workspace.toplevel(suite.path.parent)

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    def done(self) -> bool:
        return self.result_file.is_file()

    def progress(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / "progress.json").read_text())
        except (OSError, ValueError):
            return None

    def result(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.result_file.read_text())
        except (OSError, ValueError):
            return None

    def clean(self) -> None:
        """What an interrupted attempt left: its org stopped, its folder gone."""
        repo = self.folder / "repo"
        paths = org_paths(repo, TAG)
        if paths.state_json.exists():
            with contextlib.suppress(AutoorgError):
                teardown_org(paths)
        if self.folder.exists():
            shutil.rmtree(self.folder)

    def run(self, *, stop: list[bool]) -> dict[str, Any]:
        """Run the cell to its budget (or until stop[0] is set) and write result.json."""
        self.clean()
        self.folder.mkdir(parents=True)
        reference = reference_of(self.suite, self.source, self.task)
        task_arg = snapshot(self.source, self.task, self.folder / "repo")
        task_spec = load_task(self.folder / "repo" / task_arg)
        target = org_target(self.org, self.suite, self.folder, self.folder / "repo", task_arg)
        if self.suite.simulate:
            paths, began, ended, agents = self._simulate(target, task_spec, task_arg)
        else:
            plan = plan_org(target, repo=self.folder / "repo", tag=TAG, task=task_arg, backend=self.org.backend,
                            runtime="headless")
            began = datetime.now(UTC)
            build_org(plan)
            paths, agents = plan.paths, len(plan.agents)
            try:
                ended = self._watch(paths, began, stop)
            finally:
                teardown_org(paths)
        fig = figures.org_figures(task_spec, ledger.experiments(paths), ledger.promotions(paths),
                                  ledger.verifications(paths), ledger.baselines(paths), ledger.usage_totals(paths),
                                  began=began, ended=ended, reference=reference)
        result = {"org": self.org.name, "task": self.task, "repeat": self.repeat, "baseline": self.org.baseline,
                  "budget_s": self.suite.budget_s, "metric": task_spec.metric, "direction": task_spec.direction,
                  "began": iso(began), "ended": iso(ended), "stopped": "interrupted" if stop[0] else "budget",
                  "agents": agents, "simulated": self.suite.simulate, "figures": fig}
        if not stop[0]:
            atomic_write_text(self.result_file, json.dumps(result, indent=1) + "\n")
        return result

    def _simulate(self, target: str, task: TaskSpec, task_arg: str) -> tuple[OrgPaths, datetime, datetime, int]:
        """The org on a simulated clock (bench/sim.py): its agents' strategies and gate settings from its spec,
        one slot per agent, until its runs have used the suite's compute in simulated time."""
        spec = load_org_target(target, self.folder / "repo", tag=TAG, task=task_arg, backend=self.org.backend)
        paths = org_paths(self.folder / "repo", TAG)
        paths.home.mkdir(parents=True)
        strategies = [a.model if a.model in search.STRATEGIES else "local" for a in spec.agents]
        settings = sim.SimSettings(agents=len(spec.agents), experiments=None, slots=len(spec.agents),
                                   gate=gate_settings(spec), strategies=strategies, seed=self.repeat,
                                   compute_limit_s=self.suite.budget_s)
        began = datetime.now(UTC)
        with ledger.batch(paths):
            result = sim.SimOrg(paths, task, settings, source=self.folder / "repo", start=began).run()
        return paths, began, began + timedelta(seconds=result.simulated_s), len(spec.agents)

    def _watch(self, paths: OrgPaths, began: datetime, stop: list[bool]) -> datetime:
        """Until the org has used its compute or its time: write progress.json once a second."""
        while True:
            now = datetime.now(UTC)
            rows = ledger.experiments(paths)
            spent = figures.spent_seconds(rows, now)
            promotions = ledger.promotions(paths)
            elapsed = (now - began).total_seconds()
            atomic_write_text(self.folder / "progress.json", json.dumps({
                "spent_s": spent, "budget_s": self.suite.budget_s, "elapsed_s": elapsed, "runs": len(rows),
                "promotions": len(promotions),
                "best": promotions[-1]["metric"] if promotions else None}) + "\n")
            if spent >= self.suite.budget_s or elapsed >= self.suite.limit_s or stop[0]:
                return now
            time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    suite_path, out, org_name, task, repeat = argv
    suite = load_suite(Path(suite_path))
    org = next(o for o in suite.orgs if o.name == org_name)
    cell = Cell(suite, Path(out), org, task, int(repeat))
    stop = [False]

    def interrupted(_sig: int, _frame: Any) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        cell.run(stop=stop)
    except AutoorgError as exc:
        cell.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell.folder / "error.txt", f"{exc}\n")
        print(f"autoorg bench: {org_name} {task} r{repeat}: {exc}", file=sys.stderr)
        return 2
    return 130 if stop[0] else 0

