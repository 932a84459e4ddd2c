"""`autoorg doctor` — what this machine has for running an org, and how to fix what is missing."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

from autoorg.agents import Backend, backends
from autoorg.compute import gpu
from autoorg.experiments.sandbox import NAMESPACES, seal_mode


def _version(binary: str, *args: str) -> str | None:
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else path


def checks() -> list[dict[str, object]]:
    """One row per thing autoorg may need: name, ok, detail, fix."""
    rows: list[dict[str, object]] = []
    tmux_v = _version("tmux", "-V")
    rows.append({"name": "tmux", "ok": tmux_v is not None, "detail": tmux_v or "not found",
                 "fix": "" if tmux_v else "apt-get install tmux (3.0 or newer)"})
    git_v = _version("git", "--version")
    rows.append({"name": "git", "ok": git_v is not None, "detail": git_v or "not found",
                 "fix": "" if git_v else "apt-get install git"})
    found, method = gpu.discover()
    detail = ", ".join(f"{g.index}: {g.name} ({g.memory_mb} MiB)" for g in found) or "none"
    rows.append({"name": "gpus", "ok": True, "detail": f"{detail} (via {method})",
                 "fix": "" if found else "no GPU: use a CPU org such as 4xcpu"})
    seal = seal_mode()
    rows.append({"name": "sealed runs", "ok": seal.mode == NAMESPACES,
                 "detail": "user, mount and pid namespaces (unshare)" if seal.mode == NAMESPACES else seal.notice(),
                 "fix": "" if seal.mode == NAMESPACES else
                 "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) and install "
                 "util-linux's unshare"})
    for name, backend in sorted(backends().items()):
        rows.append(backend_row(name, backend))
    return rows


def backend_row(name: str, backend: Backend) -> dict[str, object]:
    """A backend's readiness: available or why not, and for LLM backends the CLI or SDK version, which
    credentials it would use, and which first-start dialogs autoorg answers for it."""
    ok, why = backend.available()
    row: dict[str, object] = {"name": f"backend {name}", "ok": ok, "detail": why, "fix": "" if ok else why}
    row.update(backend.details())
    return row


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check tmux, git, GPUs, agent CLIs and keys")
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = checks()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = "ok  " if row["ok"] else "miss"
        line = f"[{mark}] {row['name']:<18} {row['detail']}"
        if row["fix"] and row["fix"] != row["detail"]:
            line += f"  -> {row['fix']}"
        print(line)
        if "version" in row:
            print(f"       {'':<18} version {row['version']}; first-start dialogs: {row['dialogs']}")
    return 0
