"""Where an org's runs execute (`executor:` in the org file, or `up --executor ray --ray-address ADDR`).

`local` (the default): each run on this machine, on a slot leased by flock. `ray`: each run a Ray task on a
cluster that requests the slot's resources (its GPUs, `cpus` CPUs), so Ray places it; the org itself (agents,
comms, daemon, ledger, gate) stays on the machine where `up` runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from autoorg.errors import SpecError
from autoorg.spec.loader import check_keys, line_of

KINDS = ("local", "ray")
EXECUTOR_KEYS = {"kind": "local (this machine) or ray (a Ray cluster)",
                 "address": "the Ray cluster: auto, ray://HOST:PORT or HOST:PORT (default auto)",
                 "cpus": "CPUs each run asks Ray for (default 1)"}
# `auto` (the cluster this machine is part of), `local` (a fresh one here), or host:port, or ray://host:port
ADDRESS_RE = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9][A-Za-z0-9.-]*:\d{1,5})$")


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str = "local"
    address: str | None = None  # ray only: None means `auto`
    cpus: int = 1  # ray only: CPUs per run

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "local":
            return {"kind": "local"}
        return {"kind": self.kind, "address": self.address or "auto", "cpus": self.cpus}


def build_executor(raw: Any, *, source: str, kind: str | None = None, address: str | None = None) -> ExecutorSpec:
    """Validate `executor:` (None: local); `kind` and `address` (the CLI's flags) win over the file."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SpecError("executor must be a mapping such as {kind: ray, address: auto}", source=source,
                        line=line_of(raw))
    check_keys(raw, EXECUTOR_KEYS, source=source, where="executor")
    line = line_of(raw, "kind")
    final_kind = kind or raw.get("kind", "local")
    if final_kind not in KINDS:
        raise SpecError(f"unknown executor kind {final_kind!r}", source=source if not kind else "--executor",
                        line=line if not kind else None, hint=f"choose from {', '.join(KINDS)}")
    final_address = address if address is not None else raw.get("address")
    if final_address is not None:
        where, at = ("--ray-address", None) if address is not None else (source, line_of(raw, "address"))
        if final_kind != "ray":
            raise SpecError("an address is for executor kind ray", source=where, line=at)
        if not isinstance(final_address, str) or not ADDRESS_RE.match(final_address):
            raise SpecError(f"bad Ray address {final_address!r}", source=where, line=at,
                            hint="use auto, HOST:PORT or ray://HOST:PORT")
    cpus = raw.get("cpus", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise SpecError(f"executor.cpus must be a whole number ≥ 1, not {cpus!r}", source=source,
                        line=line_of(raw, "cpus"))
    return ExecutorSpec(kind=final_kind, address=final_address if final_kind == "ray" else None, cpus=cpus)
