"""Stage 1 of every spec: safe YAML that keeps the line of every mapping key, and key checks with did-you-mean."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from autoorg.errors import SpecError

# ---------------------------------------------------------------------------------------------------------------
# Stage 1: read (YAML with line numbers kept for every mapping key)


class _Mapping(dict):
    line: int = 0
    key_lines: dict[str, int]
    item_lines: dict[str, list[int]]  # for a key whose value is a list: the line of each item


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader where PyYAML was built with it (about 10x faster; every `autoorg` command and run
    reads the org and task files), else PyYAML's own."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines, mapping.item_lines = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.SequenceNode):
            mapping.item_lines[str(key)] = [item.start_mark.line + 1 for item in value_node.value]
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file; a syntax error names file:line:col."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SpecError(f"{where}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: YAML error: {exc}") from None


def line_of(mapping: Any, key: str | None = None) -> int | None:
    if not isinstance(mapping, _Mapping):
        return None
    if key is not None and key in mapping.key_lines:
        return mapping.key_lines[key]
    return mapping.line or None


def item_line(mapping: Any, key: str, index: int) -> int | None:
    """The line of item `index` of the list under `key` (None where it is not known)."""
    lines = getattr(mapping, "item_lines", {}).get(key, [])
    return lines[index] if index < len(lines) else line_of(mapping, key)


def check_keys(mapping: Any, allowed: dict[str, Any], *, source: str, where: str) -> None:
    """Unknown keys are errors naming the file, line, key and the nearest valid spelling."""
    if not isinstance(mapping, dict):
        raise SpecError(f"{where} must be a mapping, got {type(mapping).__name__}", source=source,
                        line=line_of(mapping))
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(allowed)
            raise SpecError(f"unknown key '{key}' in {where}", source=source, line=line_of(mapping, str(key)),
                            hint=hint)
