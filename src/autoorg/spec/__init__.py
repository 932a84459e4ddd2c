"""Org and task specs, in explicit stages: read YAML → expand presets/shorthands → fill defaults → validate.

An org comes from a preset (`8x1gpu`, `4x2gpu`, `4xcpu`, `chief+7x1gpu`) or a YAML file. Every error names the
file, the line and, for unknown keys, the nearest valid spelling.
"""

from autoorg.spec.loader import check_keys, line_of, read_yaml
from autoorg.spec.org import (
    AGENT_KEYS,
    AGENT_NAMES,
    BACKEND_GROUP,
    BUILTIN_ROLES,
    DEFAULT_KEYS,
    MAX_AGENTS,
    NAME_RE,
    ORG_KEYS,
    PRESET_RE,
    RESERVED_NAMES,
    ROLE_KEYS,
    TAG_RE,
    AgentSpec,
    OrgSpec,
    backend_names,
    build_spec,
    expand_preset,
    is_preset,
    load_org,
)
from autoorg.spec.processes import (
    PROCESS_KEYS,
    Baseline,
    Gate,
    Processes,
    Restart,
    Standup,
    build_processes,
    format_interval,
    parse_interval,
)
from autoorg.spec.task import KNOB_KEYS, TASK_KEYS, Knob, TaskSpec, find_task, load_task

__all__ = ['AGENT_KEYS', 'AGENT_NAMES', 'AgentSpec', 'Baseline', 'BACKEND_GROUP', 'BUILTIN_ROLES', 'DEFAULT_KEYS', 'Gate', 'KNOB_KEYS', 'Knob', 'MAX_AGENTS', 'NAME_RE', 'ORG_KEYS', 'OrgSpec', 'PRESET_RE', 'Processes', 'PROCESS_KEYS', 'RESERVED_NAMES', 'Restart', 'ROLE_KEYS', 'Standup', 'TAG_RE', 'TASK_KEYS', 'TaskSpec', 'backend_names', 'build_processes', 'build_spec', 'check_keys', 'expand_preset', 'find_task', 'format_interval', 'is_preset', 'line_of', 'load_org', 'load_task', 'parse_interval', 'read_yaml']
