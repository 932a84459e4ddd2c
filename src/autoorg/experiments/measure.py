"""The measurement of a run: the metric comes from the task's protected evaluator, never from the code under test.

  evaluate     after training ends, export the protected files from the program head's commit into a fresh
               folder of the run (never the run's own copy) and run the task's `evaluate:` command there, in its
               own process, on training's output folder; its one final line is the result. Training's @metric
               lines stay progress. A task without `evaluate:` is measured from training's own final line
               (unprotected: the code under test reports its own number).
  heldout      the gate's runs are also scored by the task's `heldout:` command (a split agents never see a
               number for); the gate compares promotions on it. An `evaluate:` command with {heldout_out} scores
               both splits in one process (a model's loading is paid once): for a gate run it is a file in the
               run's folder, removed before the evaluator starts, where the evaluator writes the held-out final
               line (`written_value`); for an agent's run it is '' and the evaluator scores validation only.
  metric_value the sanity rules: one final line, a JSON number, finite, inside the task's declared range.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoorg import workspace
from autoorg.experiments.process import (
    Outcome,
    Unrepresentable,
    final_metrics,
    last_line,
    parse_metric_line,
    run_command,
)
from autoorg.experiments.sandbox import Sealing
from autoorg.spec import TaskSpec

EVALUATE_MIN_S = 60.0  # an evaluator gets the task's grace, at least this (loading a model under load is slow)


@dataclass
class Measurement:
    """The result of a run: its final metrics and value, or why it has none (`crash: <why>`)."""

    finals: dict[str, Any] | None
    value: float | None
    crash: str | None = None
    heldout: float | None = None


def metric_value(task: TaskSpec, out: Outcome) -> tuple[dict[str, Any] | None, float | None, str | None]:
    """(final metrics, value, crash reason) of a finished process under the sanity rules."""
    if sum(bool(m.get("final")) for m in out.metric_lines) > 1:
        return None, None, "more than one final line"
    finals = final_metrics(out.metric_lines, out.plain, task.metric)
    if finals is None or task.metric not in finals:
        return finals, None, f"metric never printed (no final {task.metric})"
    raw = finals[task.metric]
    name = task.metric
    if isinstance(raw, Unrepresentable):
        return finals, None, f"{name} {raw} does not fit a float"
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return finals, None, f"{name} is not a number ({raw!r})"
    value = float(raw)
    if not math.isfinite(value):
        return finals, None, f"{name} is {value}"
    if task.metric_range is not None:
        lo, hi = task.metric_range
        if not lo <= value <= hi:
            return finals, None, f"{name} {value:g} is outside the task's range [{lo:g}, {hi:g}]"
    return finals, value, None


WRITTEN_MAX = 2**20  # an evaluator writes a few lines to its file; more than this is not read (None)


def written_value(task: TaskSpec, path: Path) -> float | None:
    """The value of the final line an evaluator wrote to a file, under the sanity rules (None: missing, insane,
    or over WRITTEN_MAX: a file something filled is not read into memory)."""
    try:
        with open(path, "rb") as file:
            raw = file.read(WRITTEN_MAX + 1)
    except OSError:
        return None
    if len(raw) > WRITTEN_MAX:
        return None
    text = raw.decode("utf-8", errors="replace")
    out = Outcome(exit_code=0, killed=None, wall_s=0.0, maxrss_gb=None)
    for line in text.splitlines():
        parsed = parse_metric_line(line)
        if parsed is not None:
            what, data = parsed
            if what == "metric":
                out.metric_lines.append(data)
            else:
                out.plain.update(data)
    return metric_value(task, out)[1]


def export_evaluator(repo: Path, head: str, task: TaskSpec, dest: Path) -> None:
    """The protected files of the program head into dest, a fresh folder (whatever was there is removed first)."""
    shutil.rmtree(dest, ignore_errors=True)
    workspace.export_tree(repo, head, dest, paths=task.protected)


def evaluate(task: TaskSpec, command: str, *, cwd: Path, env: dict[str, str], log_path: Path,
             metrics_path: Path, keep_fds: tuple[int, ...] = (), cores: tuple[int, ...] = (),
             sealing: Sealing | None = None) -> Measurement:
    """Run one evaluation command (in the exported evaluator folder), sealed when `sealing` says, and judge its
    output."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n--- evaluation by the protected evaluator: {command}\n")
    out = run_command(command, cwd=cwd, env=env, limit_s=max(task.grace, EVALUATE_MIN_S), log_path=log_path,
                      metrics_path=metrics_path, keep_fds=keep_fds, cores=cores, sealing=sealing)
    if out.strayed:
        return Measurement(None, None, f"evaluation {out.strayed}")
    if out.killed:
        return Measurement(None, None, f"evaluation {out.killed}")
    if out.exit_code != 0:
        why = f"evaluation failed (exit {out.exit_code}): {last_line(log_path)}"
        return Measurement(None, None, why)
    finals, value, crash = metric_value(task, out)
    if crash:
        crash = f"evaluation: {crash}"
    return Measurement(finals, value, crash)
