"""`autoorg results [--json] [--agent A] [--all]` — the ledger: every experiment, its metric, delta and verdict."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from autoorg import comms, experiments, gate
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.experiments import ledger

ROW_KEYS = ("exp", "kind", "agent", "commit_sha", "parent", "head", "tree", "verdict", "metric", "delta", "band",
            "ref_head", "ref_mean", "ref_n", "sigma", "seed", "budget", "slot_class", "slot", "wall_s", "train_s",
            "memory_gb", "exit_code", "description", "diff_stat", "org_code", "candidate", "queued", "started",
            "finished", "metrics", "agent_tokens", "agent_cost_usd", "cpu_s", "gpu_s", "sealed", "executor", "node",
            "node_ip", "gpu_ids")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="the ledger: experiments, metrics, deltas, verdicts, promotions")
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.add_argument("--agent", help="only this agent's experiments")
    p.add_argument("--all", action="store_true", help="also the gate's baseline and verification runs")
    p.add_argument("--limit", type=int, default=40, help="rows shown in the table (default 40; --json: all)")
    add_org_options(p)
    p.set_defaults(func=run)


HELDOUT_NUMBERS = ("heldout_mean", "heldout_head_mean", "heldout_delta", "heldout_band")


def results(paths: Any, *, agent: str | None = None, include_gate: bool = False,
            heldout: bool = True) -> dict[str, Any]:
    """The stable shape of `autoorg results --json`; without `heldout` (an agent asking) the promotions keep only
    the held-out flag, never a held-out number."""
    ctx = experiments.load_context(paths)
    head = ctx.program_head()
    kinds = ledger.KINDS if include_gate else ("exp",)
    heads = {}
    for cls in gate.slot_classes(ctx):
        stats = gate.head_stats(ctx, head, cls)
        noise = gate.noise(paths, cls)
        heads[cls] = {"n": stats.n, "mean": stats.mean, "sigma": noise.sigma, "dof": noise.dof}
    return {
        "tag": paths.tag, "task": ctx.task.name, "metric": ctx.task.metric, "direction": ctx.task.direction,
        "program_branch": ctx.program_branch, "program_head": head, "head": heads,
        "experiments": [{k: r[k] for k in ROW_KEYS} for r in ledger.experiments(paths, agent=agent, kinds=kinds)],
        "verifications": ledger.verifications(paths),
        "promotions": [{k: v for k, v in p.items() if heldout or k not in HELDOUT_NUMBERS}
                       for p in ledger.promotions(paths)],
        "usage": ledger.usage_totals(paths),
        "islands": gate.island_summary(ctx),
        "migrations": ledger.island_migrations(paths),
    }


def _num(value: float | None, fmt: str = ".6g") -> str:
    return "-" if value is None else format(value, fmt)


def render(data: dict[str, Any], limit: int) -> str:
    metric = data["metric"]
    lines = [f"org {data['tag']} · task {data['task']} ({metric}, {data['direction']}) · "
             f"{data['program_branch']} @ {data['program_head'][:10]}"]
    for cls, h in data["head"].items():
        lines.append(f"  head on {cls}: mean {_num(h['mean'])} over {h['n']} runs, σ {_num(h['sigma'], '.3g')} "
                     f"(dof {h['dof']})")
    for i in data["islands"]:
        lines.append(f"  island {i['island']} ({', '.join(i['agents'])}): {i['branch']} @ {i['head'][:10]}, mean "
                     f"{_num(i['mean'])} over {i['n']} runs, {i['promotions']} promoted")
    for p in data["promotions"]:
        on = f" on {p['branch']}" if p.get("branch") else ""
        lines.append(f"  promoted {p['exp']} ({p['agent']}){on}: {p['description']} → {metric} {p['metric']:.6g} "
                     f"(val {p['delta']:+.4g}{gate.heldout_gain(p)})")
    for m in data["migrations"]:
        lines.append(f"  migrated island {m['from_island']}'s head {m['new_head'][:10]} to {m['branch']} "
                     f"({metric} {_num(m['from_mean'])} vs {_num(m['old_mean'])})")
    rows = data["experiments"][-limit:]
    width = max([6, *(len(r["slot"] or "") for r in rows)])  # a Ray run's slot says where it ran: gpu0@IP:node
    lines.append(f"{'EXP':<6} {'KIND':<8} {'AGENT':<8} {metric.upper():<10} {'DELTA':<9} {'SLOT':<{width}} "
                 f"{'VERDICT':<24} DESCRIPTION")
    for r in rows:
        lines.append(f"{r['exp']:<6} {r['kind']:<8} {r['agent']:<8} {_num(r['metric']):<10} "
                     f"{_num(r['delta'], '+.4g'):<9} {r['slot'] or '-':<{width}} {r['verdict'][:24]:<24} "
                     f"{r['description']}")
    if not rows:
        lines.append("(no experiments yet: autoorg exp run -m 'what changed')")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    # agents never see a held-out number (their panes carry AUTOORG_AGENT); people see val and held-out side by side
    data = results(paths, agent=args.agent, include_gate=args.all, heldout="AUTOORG_AGENT" not in os.environ)
    if args.agent and not data["experiments"]:
        comms.known_agent(paths, args.agent)  # a typo is an error, not "no experiments yet"
    print(json.dumps(data, indent=2) if args.json else render(data, args.limit))
    return 0
