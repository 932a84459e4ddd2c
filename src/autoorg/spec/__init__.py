"""Org and task specs, in explicit stages: read YAML → expand presets/shorthands → fill defaults → validate.

An org comes from a preset (`8x1gpu`, `4x2gpu`, `4xcpu`, `chief+7x1gpu`) or a YAML file. Every error names the
file, the line and, for unknown keys, the nearest valid spelling.
"""

from autoorg.spec.loader import check_keys, line_of, read_yaml
from autoorg.spec.org import (
    AGENT_KEYS,
    AGENT_NAMES,
    BACKENDS,
    BUILTIN_ROLES,
    DEFAULT_KEYS,
    MAX_AGENTS,
    NAME_RE,
    ORG_KEYS,
    PRESET_RE,
    PROCESS_KEYS,
    RESERVED_NAMES,
    ROLE_KEYS,
    TAG_RE,
    AgentSpec,
    OrgSpec,
    build_spec,
    expand_preset,
    is_preset,
    load_org,
    parse_interval,
)
from autoorg.spec.task import KNOB_KEYS, TASK_KEYS, Knob, TaskSpec, find_task, load_task

__all__ = ['AGENT_KEYS', 'AGENT_NAMES', 'AgentSpec', 'BACKENDS', 'BUILTIN_ROLES', 'DEFAULT_KEYS', 'KNOB_KEYS', 'Knob', 'MAX_AGENTS', 'NAME_RE', 'ORG_KEYS', 'OrgSpec', 'PRESET_RE', 'PROCESS_KEYS', 'RESERVED_NAMES', 'ROLE_KEYS', 'TAG_RE', 'TASK_KEYS', 'TaskSpec', 'build_spec', 'check_keys', 'expand_preset', 'find_task', 'is_preset', 'line_of', 'load_org', 'load_task', 'parse_interval', 'read_yaml']
