"""`autoorg status [--json] [--watch]` — each agent's role, backend, slots, branch, head, pane and liveness."""

from __future__ import annotations

import argparse
import json
import time

from autoorg.agents import usage
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.experiments import ledger
from autoorg.org import org_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the org's agents: branch, slots, pane, state")
    add_org_options(p)
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.add_argument("--watch", action="store_true", help="refresh every few seconds (Ctrl-C to stop)")
    p.add_argument("--interval", type=float, default=3.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def render(status: dict) -> str:
    head = (status.get("program_head") or "")[:10]
    state = "running" if status["running"] else "stopped"
    where = "headless" if status.get("runtime") == "headless" else f"session {status['session']}"
    executor = status.get("executor") or {}
    if executor.get("kind") == "ray":
        where += f" · runs on the Ray cluster {executor.get('address')}"
    lines = [f"org {status['tag']} ({state}) · {where} · {status['program_branch']} @ {head}",
             *([] if status.get("daemon_alive", True) or not status["running"] else
               ["daemon: not running (no doorbells, restarts or gate) — `autoorg up --resume` restarts it"]),
             f"{'AGENT':<10} {'ROLE':<10} {'BACKEND':<9} {'SLOTS':<7} {'STATE':<9} {'PANE':<5} {'HEAD':<10} BRANCH"]
    for a in status["agents"]:
        lines.append(f"{a['name']:<10} {a['role'] or '-':<10} {a['backend']:<9} {','.join(a['slots']) or '-':<7} "
                     f"{a['state']:<9} {a['pane']:<5} {(a['head'] or '-')[:10]:<10} {a['branch']}")
        if a.get("detail") and a["state"] in ("crashed", "stopped", "human", "paused", "running"):
            # why, e.g. "exited with status 3; gave up ...", or where its run is: "e0012 on gpu0@10.0.0.5:3f2a9c"
            lines.append(f"{'':<10} {a['state']}: {a['detail']}")
    for rule in status.get("rules", []):
        if rule["fired"]:
            what = "stopped queuing" if rule["action"] == "stop" else "paused"
            lines.append(f"stop rule fired {rule['fired'][:19]}Z: {rule['progress']} -> {what}")
        elif rule["closeness"] >= 0.5:
            lines.append(f"stop rule close: {rule['progress']} -> {rule['action']}")
    spenders = [a for a in status["agents"] if a.get("usage")]
    if spenders:
        total = {k: sum(a["usage"][k] for a in spenders) for k in ledger.USAGE_COUNTS}
        costs = [a["usage"]["cost_usd"] for a in spenders]
        total["cost_usd"] = None if None in costs else sum(costs)
        lines.append(f"model use: {usage.summary(total)} ({len(spenders)} agent(s))")
        for a in spenders:
            u = a["usage"]
            lines.append(f"  {a['name']:<10} {u['model'] or u['backend']:<24} {usage.summary(u)} "
                         f"({u['requests']} requests, {u['sessions']} session(s))")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    if not args.watch:
        status = org_status(paths)
        print(json.dumps(status, indent=2) if args.json else render(status))
        return 0
    while True:
        print("\033[2J\033[H" + render(org_status(paths)), flush=True)
        time.sleep(args.interval)
