"""`autoorg agent --backend B` — run a built-in agent in this pane (AUTOORG_AGENT names the agent):
`heuristic` (the offline researcher, autoorg.heuristic) or `anthropic` / `openai` (the SDK tool loop,
autoorg.agent_loop)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoorg import experiments
from autoorg.agents.search import STRATEGIES
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.errors import BackendError

BUILT_IN = ("heuristic", "anthropic", "openai")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run a built-in agent in this pane (heuristic, anthropic, openai)")
    p.add_argument("--backend", default="heuristic", help="which built-in agent: " + ", ".join(BUILT_IN))
    p.add_argument("--max-experiments", type=int, help="heuristic: stop after this many experiments "
                   "(a chief's or critic's rounds)")
    p.add_argument("--seed", type=int, help="heuristic: seed of its own choices (default: name and time)")
    p.add_argument("--strategy", default="local", choices=STRATEGIES,
                   help="heuristic: how it picks the next configuration (the agent's `model:`): local search "
                        "around the verified best, random, tpe (Optuna), keep (autoresearch's keep-if-better)")
    p.add_argument("--kickoff", help="anthropic/openai: the first user message")
    p.add_argument("--model", help="anthropic/openai: model id (default: the agent's, else the backend's)")
    p.add_argument("--system-file", type=Path, help="anthropic/openai: role prompt file")
    add_org_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.backend in ("anthropic", "openai"):
        from autoorg.agents.sdk import run_in_pane  # the SDKs load only for this command (start-up time)

        return run_in_pane(args.backend, model=args.model, system_file=args.system_file, kickoff=args.kickoff)
    if args.backend != "heuristic":
        raise BackendError(f"`autoorg agent` runs the built-in agents ({', '.join(BUILT_IN)}); backend "
                           f"'{args.backend}' runs in its own CLI")
    from autoorg.agents.offline import run_offline_agent  # the gate and git machinery: only for this command

    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    agent = experiments.current_agent(paths, ctx.state)
    run_offline_agent(paths, agent, say=lambda line: print(line, flush=True), seed=args.seed,
                      max_rounds=args.max_experiments, strategy=args.strategy)
    return 0
