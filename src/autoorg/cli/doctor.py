"""`autoorg doctor` — what this machine has for running an org, and how to fix what is missing."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys

from autoorg.agents import Backend, backends
from autoorg.cli.common import org_from_args
from autoorg.compute import gpu
from autoorg.environment import python_problem, required_python
from autoorg.errors import AutoorgError
from autoorg.executors import ray as ray_executor
from autoorg.experiments.sandbox import NAMESPACES, seal_mode
from autoorg.spec import ExecutorSpec, load_org
from autoorg.spec.executor import build_executor


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


def python_row(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> dict[str, object]:
    """This interpreter against the minimum the project declares (pyproject's requires-python)."""
    problem = python_problem(version)
    declared = required_python()
    detail = f"{'.'.join(map(str, version))} ({sys.executable})" + (f"; requires-python {declared}" if declared else "")
    return {"name": "python", "ok": problem is None, "level": "miss" if problem else "ok", "detail": detail,
            "fix": problem or ""}


def checks(executor: ExecutorSpec | None = None) -> list[dict[str, object]]:
    """One row per thing autoorg may need: name, ok, level (ok, miss: a real problem, info: nothing to fix
    unless you want it), detail, fix (and the Ray cluster when `executor` is ray)."""
    rows: list[dict[str, object]] = [python_row()]
    tmux_v = _version("tmux", "-V")
    rows.append({"name": "tmux", "ok": tmux_v is not None, "level": "ok" if tmux_v else "miss",
                 "detail": tmux_v or "not found",
                 "fix": "" if tmux_v else "apt-get install tmux (3.0 or newer)"})
    git_v = _version("git", "--version")
    rows.append({"name": "git", "ok": git_v is not None, "level": "ok" if git_v else "miss",
                 "detail": git_v or "not found",
                 "fix": "" if git_v else "apt-get install git"})
    found, method = gpu.discover()
    detail = (", ".join(f"{g.index}: {g.name} ({g.memory_mb} MiB)" for g in found) + f" (via {method})" if found
              else f"none found ({'no NVML, no nvidia-smi' if method == 'none' else 'via ' + method}): orgs run "
                   "on CPU slots")
    rows.append({"name": "gpus", "ok": True, "level": "ok" if found else "info", "detail": detail,
                 "fix": "" if found else "use a CPU org such as 4xcpu"})
    seal = seal_mode()
    rows.append({"name": "sealed runs", "ok": seal.mode == NAMESPACES, "level": "ok" if seal.mode == NAMESPACES else "miss",
                 "detail": "user, mount and pid namespaces (unshare)" if seal.mode == NAMESPACES else seal.notice(),
                 "fix": "" if seal.mode == NAMESPACES else
                 "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) and install "
                 "util-linux's unshare"})
    if executor is not None and executor.kind == "ray":
        rows.append(ray_row(executor))
    for name, backend in sorted(backends().items()):
        rows.append(backend_row(name, backend))
    return rows


def ray_row(executor: ExecutorSpec) -> dict[str, object]:
    """The Ray cluster the org's runs go to: reachable, its nodes, GPUs and CPUs, and Ray's version here (joining
    refuses a cluster of another Ray or Python version, so a join is a version match)."""
    address = executor.address or "auto"
    row: dict[str, object] = {"name": "ray cluster"}
    try:
        found = ray_executor.cluster_summary(executor.address)
    except AutoorgError as exc:
        return {**row, "ok": False, "detail": str(exc),
                "fix": f"start it (ray start --head, or ray up cluster.yaml) or pass --ray-address; from here: "
                       f"ray status --address {address}"}
    finally:
        ray_executor.disconnect()
    detail = (f"{found['address']}: {found['nodes']} node(s), {found['gpus']} GPU(s), {found['cpus']} CPU(s); "
              f"ray {found['version']} here, same as the cluster's")
    return {**row, "ok": found["nodes"] > 0, "detail": detail, "fix": "", "cluster": found}


def selected_executor(args: argparse.Namespace) -> ExecutorSpec | None:
    """The executor --executor/--ray-address name, else that of the org found here (None: neither)."""
    if args.executor or args.ray_address:
        return build_executor(None, source="doctor", kind=args.executor or "ray", address=args.ray_address)
    with contextlib.suppress(AutoorgError):
        return load_org(str(org_from_args(args).org_yaml)).executor
    return None


def backend_row(name: str, backend: Backend) -> dict[str, object]:
    """A backend's readiness: available or why not, and for LLM backends the CLI or SDK version, which
    credentials it would use, and which first-start dialogs autoorg answers for it."""
    ok, why = backend.available()
    # a backend `auto` never picks (command) is not missing when it is not ready: it runs only what an org names
    level = "ok" if ok else "miss" if backend.auto_rank is not None else "info"
    row: dict[str, object] = {"name": f"backend {name}", "ok": ok, "level": level, "detail": why,
                              "fix": "" if ok or level == "info" else why}
    row.update(backend.details())
    return row


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check tmux, git, GPUs, agent CLIs and keys")
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.add_argument("--executor", help="also check this executor (ray: the cluster); default: the org's")
    p.add_argument("--ray-address", help="the Ray cluster to check: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--tag", help="which org's executor to check, when several run in this repo")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = checks(selected_executor(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        mark = {"ok": "ok  ", "miss": "miss", "info": "info"}[str(row["level"])]
        line = f"[{mark}] {row['name']:<18} {row['detail']}"
        if row["fix"] and row["fix"] != row["detail"]:
            line += f"  -> {row['fix']}"
        print(line)
        if "version" in row:
            print(f"       {'':<18} version {row['version']}; first-start dialogs: {row['dialogs']}")
        if "note" in row:
            print(f"       {'':<18} note: {row['note']}")
    return 0
