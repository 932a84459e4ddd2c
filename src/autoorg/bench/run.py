"""Running a suite: its cells, `parallel` at a time, each in a process pinned to its share of the cores; a
progress line per org; the report at the end. Resumable: finished cells (result.json) are kept, the rest run
again from scratch. Ctrl-C stops every running org like `autoorg down` and says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from autoorg import workspace
from autoorg.bench import report
from autoorg.bench.cell import Cell
from autoorg.bench.suite import Suite
from autoorg.errors import Say

REFRESH_S = 1.0
STOP_WAIT_S = 120.0  # how long a stopped cell may take to take its org down


@dataclass
class Running:
    cell: Cell
    proc: subprocess.Popen[bytes]
    cores: list[int]
    started: float = field(default_factory=time.monotonic)


def core_shares(cores: int, parallel: int) -> list[list[int]]:
    """`parallel` sets of `cores` CPUs from this process's affinity, disjoint while there are enough."""
    mine = sorted(os.sched_getaffinity(0))
    return [[mine[(i * cores + j) % len(mine)] for j in range(min(cores, len(mine)))] for i in range(parallel)]


def default_out(suite: Suite) -> Path:
    """`.autoorg/bench/<suite>/` at the root of the suite's repository (beside the orgs' own state, out of git)."""
    root = workspace.toplevel(suite.path.parent)
    workspace.ensure_excluded(root)
    return root / ".autoorg" / "bench" / suite.name


class Bench:
    def __init__(self, suite: Suite, out: Path, *, stream: TextIO = sys.stdout, say: Say = print) -> None:
        self.suite, self.out, self.stream, self.say = suite, out, stream, say
        self.cells = [Cell(suite, out, org, task, r) for org, task, r in suite.cells()]
        self.failed: dict[str, str] = {}
        self.walls: dict[str, list[float]] = {}  # org -> wall seconds of its cells that ran to the end here
        self._drawn = 0

    def results(self) -> list[dict[str, Any]]:
        return [r for c in self.cells if (r := c.result()) is not None]

    def run(self, *, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Run every unfinished cell; False when interrupted before all were done."""
        self.out.mkdir(parents=True, exist_ok=True)
        todo = [c for c in self.cells if not c.done()]
        kept = len(self.cells) - len(todo)
        if kept:
            self.say(f"resuming: {kept} of {len(self.cells)} cells already done in {self.out}")
        free = core_shares(self.suite.cores, self.suite.parallel)
        running: list[Running] = []
        try:
            while todo or running:
                if interrupted():
                    raise KeyboardInterrupt
                while todo and free:
                    cell = self._next(todo)
                    todo.remove(cell)
                    running.append(self._start(cell, free.pop(0)))
                for r in list(running):
                    if r.proc.poll() is not None:
                        running.remove(r)
                        free.append(r.cores)
                        self._finished(r)
                self._draw(running)
                time.sleep(REFRESH_S)
        except KeyboardInterrupt:
            self._stop(running)
            done = sum(c.done() for c in self.cells)
            self.say(f"interrupted: {done} of {len(self.cells)} cells done; the same command resumes")
            return False
        self._draw([], final=True)
        return all(c.done() for c in self.cells)

    def _next(self, todo: list[Cell]) -> Cell:
        """The next cell: repeats in order (a partial bench still compares every org), and within a repeat the org
        whose cells have taken longest so far first (an org never timed yet first of all, in the suite's order), so
        the bench does not end on one long cell running alone: a one-agent org's runs take its compute one at a
        time, and its cells run about twice as long as a two-agent org's."""
        def wall(cell: Cell) -> float:
            seen = self.walls.get(cell.org.name)
            return sum(seen) / len(seen) if seen else float("inf")
        return min(todo, key=lambda c: (c.repeat, -wall(c)))

    def _start(self, cell: Cell, cores: list[int]) -> Running:
        log = open(self.out / "cells.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "autoorg.bench", str(self.suite.path), str(self.out), cell.org.name,
                 cell.task, str(cell.repeat)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, cores))  # noqa: PLW1509 - only sets the affinity
        finally:
            log.close()
        return Running(cell, proc, cores)

    def _finished(self, r: Running) -> None:
        key = f"{r.cell.org.name} {r.cell.task} r{r.cell.repeat}"
        if r.cell.done():
            self.failed.pop(key, None)
            self.walls.setdefault(r.cell.org.name, []).append(time.monotonic() - r.started)
            return
        error = r.cell.folder / "error.txt"
        why = error.read_text().strip() if error.is_file() else f"exit {r.proc.returncode} (see {self.out}/cells.log)"
        self.failed[key] = why
        self.say(f"{key} failed: {why}")

    def _stop(self, running: list[Running]) -> None:
        for r in running:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for r in running:
            try:
                r.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(r.proc.pid, signal.SIGKILL)

    def status_lines(self, running: list[Running]) -> list[str]:
        """One line per org: cells done, the running cell's share of its budget, the best verified gain so far."""
        lines = []
        width = max(len(o.name) for o in self.suite.orgs)
        for org in self.suite.orgs:
            mine = [c for c in self.cells if c.org.name == org.name]
            done = [c for c in mine if c.done()]
            now = [r for r in running if r.cell.org.name == org.name]
            fraction = len(done) / len(mine)
            parts = []
            for r in now:
                p = r.cell.progress() or {}
                share = min(1.0, p.get("spent_s", 0.0) / self.suite.budget_s)
                fraction += share / len(mine)
                parts.append(f"r{r.cell.repeat} {share:4.0%} of budget, {p.get('promotions', 0)} promoted")
            gains = [(c.result() or {}).get("figures", {}).get("improvement") for c in done]
            gains = [g for g in gains if g is not None]
            mean = f", mean verified gain {sum(gains) / len(gains):.4g}" if gains else ""
            bar = "█" * round(fraction * 20) + "·" * (20 - round(fraction * 20))
            failed = sum(1 for k in self.failed if k.startswith(f"{org.name} "))
            lines.append(f"{org.name:<{width}} {bar} {len(done)}/{len(mine)}{mean}"
                         + (f"  [{'; '.join(parts)}]" if parts else "") + (f"  {failed} failed" if failed else ""))
        return lines

    def _draw(self, running: list[Running], final: bool = False) -> None:
        lines = self.status_lines(running)
        if self.stream.isatty():
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
            self.stream.flush()
        elif final:
            self.stream.write("\n".join(lines) + "\n")

    def report(self, *, plots: bool = True) -> dict[str, Any]:
        return report.build(self.results(), suite=self.suite.name, out=self.out, plots=plots)


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every finished cell under a bench folder (for a report of whatever is there)."""
    return [json.loads(f.read_text()) for f in sorted(out.glob("cells/*/*/r*/result.json"))]
