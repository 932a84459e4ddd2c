"""state.json: the only reader and writer of an org's state file (what `up` built, where its agents run)."""

from __future__ import annotations

import json
from typing import Any

from autoorg.errors import StateError
from autoorg.paths import OrgPaths, atomic_write_text


def read_state(paths: OrgPaths) -> dict[str, Any]:
    try:
        return dict(json.loads(paths.state_json.read_text()))
    except FileNotFoundError:
        raise StateError(f"no org state at {paths.home}") from None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {paths.state_json}: {exc}") from None


def write_state(paths: OrgPaths, state: dict[str, Any]) -> None:
    atomic_write_text(paths.state_json, json.dumps(state, indent=2) + "\n")
