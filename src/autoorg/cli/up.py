"""`autoorg up ORG` — build an org: branches, worktrees, agent files, tmux grid; then attach."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoorg import orgcode
from autoorg.cli.common import org_from_args
from autoorg.errors import StateError
from autoorg.org import build_org, default_org, plan_org, resume_org
from autoorg.paths import data_dir, tmux_socket
from autoorg.runtime import tmux
from autoorg.runtime.headless import runtime_dir


def register(sub: argparse._SubParsersAction) -> None:
    topologies = ", ".join(orgcode.topology_names(Path.cwd()))
    p = sub.add_parser("up", help="start an org (a topology such as queue or chief:8, a preset such as 4xcpu or "
                       "8x1gpu, or a YAML file)",
                       description="Start an org: one worktree, branch and tmux pane per agent.")
    p.add_argument("org", nargs="?", help=f"a topology NAME[:N] ({topologies}; N sizes its team, default 4), "
                   "a preset (8x1gpu, 4x2gpu, 4xcpu, chief+7x1gpu) or an org YAML file "
                   "(default: one agent per GPU, or 4xcpu without GPUs)")
    p.add_argument("--tag", help="org name: branches org/<tag>, session autoorg-<tag> (default: preset/file name)")
    p.add_argument("--task", help="nanochat, synthetic, or a path to a task.yaml (default: the org's, else nanochat)")
    p.add_argument("--backend", help="override every agent's backend (auto, command, heuristic, claude, codex, ...)")
    p.add_argument("--command", dest="agent_command", help="the command for --backend command")
    p.add_argument("--from", dest="from_rev", default="HEAD", help="revision the program branch starts from")
    p.add_argument("--socket", help="run on a private tmux server with this socket name (env AUTOORG_TMUX_SOCKET)")
    p.add_argument("--allow-dirty", action="store_true", help="start even if the repository has uncommitted changes")
    p.add_argument("--executor", help="where runs execute: local (default) or ray")
    p.add_argument("--ray-address", help="the Ray cluster for --executor ray: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--dry-run", action="store_true", help="print the resolved spec and the plan; touch nothing. "
                   "What this machine lacks (GPUs, an agent CLI or key, a newer Python) is listed on stderr "
                   "after the plan, and the exit code is then 2")
    p.add_argument("--no-attach", action="store_true", help="do not attach to the session")
    p.add_argument("--headless", action="store_true", help="no tmux: run each agent and the daemon as a plain "
                   "process, its output in <home>/runtime/<agent>.log (for benchmarks and servers)")
    p.add_argument("--resume", action="store_true", help="restart an org whose session died (or that is down): "
                   "same branches, worktrees and comms; pick it with --tag")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    backend = args.backend
    if args.agent_command and not backend:
        backend = "command"
    if args.resume:
        return run_resume(args, tmux_socket(args.socket))
    if args.headless and args.socket:
        raise StateError("--headless runs no tmux: it cannot be combined with --socket")
    socket = None if args.headless else tmux.current_socket(tmux_socket(args.socket))
    plan = plan_org(args.org or default_org(), tag=args.tag, task=args.task, backend=backend, command=args.agent_command,
                    from_rev=args.from_rev, socket=socket, allow_dirty=args.allow_dirty,
                    runtime="headless" if args.headless else "tmux", dry_run=args.dry_run, executor=args.executor,
                    ray_address=args.ray_address)
    for note in plan.notes:
        print(f"autoorg: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(plan.spec.to_yaml().rstrip())
        print("---")
        print(plan.describe())
        for problem in plan.problems:
            print(f"autoorg: cannot start here: {problem}", file=sys.stderr)
        return 2 if plan.problems else 0
    chosen: dict[tuple[str, str], list[str]] = {}
    for agent in plan.agents:
        if agent.spec.backend == "auto":
            chosen.setdefault((agent.backend, agent.reason), []).append(agent.spec.name)
    for (backend_name, reason), names in chosen.items():
        print(f"backend auto -> {backend_name} for {', '.join(names)}: {reason}", file=sys.stderr)
    state = build_org(plan, log=lambda line: print(line, file=sys.stderr))
    print(f"task data (datasets, tokenizers) is cached in {data_dir()} (set AUTOORG_DATA to move it)",
          file=sys.stderr)
    if state.headless:
        print(f"org {plan.spec.tag} is up: {len(plan.agents)} agents headless; their output is in "
              f"{runtime_dir(plan.paths)}/<agent>.log")
        return 0
    print(f"org {plan.spec.tag} is up: {len(plan.agents)} agents in tmux session {state.session}")
    target = state.windows.get("org", state.session)
    if args.no_attach or not (sys.stdin.isatty() and sys.stdout.isatty()) or not tmux.attach(socket, target):
        print(f"attach with: {tmux.attach_hint(socket, state.session)}")
    return 0


def run_resume(args: argparse.Namespace, socket: str | None) -> int:
    """`up --resume`: the org named by --tag (or the only one here) gets its session back."""
    paths = org_from_args(args)
    given = [flag for flag, value in (("ORG", args.org), ("--dry-run", args.dry_run), ("--task", args.task),
                                      ("--backend", args.backend), ("--command", args.agent_command),
                                      ("--from", args.from_rev != "HEAD"), ("--headless", args.headless),
                                      ("--executor", args.executor), ("--ray-address", args.ray_address)) if value]
    if given:
        raise StateError(f"--resume restarts the org as it was; it cannot be combined with {', '.join(given)} "
                         "(pick the org with --tag)")
    state = resume_org(paths, socket=socket, log=lambda line: print(line, file=sys.stderr))
    if state.headless:
        print(f"org {paths.tag} resumed: {len(state.agents)} agents headless; their output is in "
              f"{runtime_dir(paths)}/<agent>.log")
        return 0
    print(f"org {paths.tag} resumed: {len(state.agents)} agents in tmux session {state.session}")
    target = state.windows.get("org", state.session)
    if args.no_attach or not (sys.stdin.isatty() and sys.stdout.isatty()) or not tmux.attach(state.socket, target):
        print(f"attach with: {tmux.attach_hint(state.socket, state.session)}")
    return 0
