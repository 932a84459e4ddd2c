"""Org and task specs, in explicit stages: read YAML → expand presets/shorthands → fill defaults → validate.

An org comes from a preset (`8x1gpu`, `4x2gpu`, `4xcpu`, `chief+7x1gpu`) or a YAML file. Every error names the
file, the line and, for unknown keys, the nearest valid spelling.
"""

from __future__ import annotations

from autoorg.spec.executor import ExecutorSpec
from autoorg.spec.org import (
           AGENT_NAMES,
           BACKEND_GROUP,
           AgentSpec,
           OrgSpec,
           backend_names,
           build_spec,
           expand_preset,
           is_preset,
           load_org,
           scaffold_org,
)
from autoorg.spec.processes import Baseline, Gate, Processes, Restart, Standup, StopRule, parse_interval
from autoorg.spec.task import HELDOUT_OUT, Knob, TaskSpec, detect_knobs, find_task, load_task, scaffold_task

__all__ = ["AGENT_NAMES", "BACKEND_GROUP", "HELDOUT_OUT", "AgentSpec", "Baseline", "ExecutorSpec", "Gate", "Knob", "OrgSpec",
           "Processes", "Restart", "Standup", "StopRule", "TaskSpec", "backend_names", "build_spec", "detect_knobs",
           "expand_preset", "find_task", "is_preset",
           "load_org", "load_task", "parse_interval", "scaffold_org", "scaffold_task"]
