"""`autoorg exp run|submit|baseline` — run an experiment under the task's budget and learn where it stands."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from autoorg import comms, executors, experiments, gate, workspace
from autoorg.agents import usage
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.compute import slots
from autoorg.errors import AutoorgError, RunnerError
from autoorg.experiments import ledger


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exp", help="run experiments: exp run -m 'what changed', exp submit, exp baseline")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    for verb, text in (("run", "commit your worktree and run it on a slot (blocks; prints the result)"),
                       ("submit", "commit and queue it; the result arrives later as a message")):
        v = verbs.add_parser(verb, help=text)
        v.add_argument("-m", "--message", required=True, help="what changed (the commit message)")
        v.add_argument("--budget", type=float, help="seconds (default: the task's; another budget is not compared)")
        v.add_argument("--seed", type=int, help="seed (default: a fresh random one)")
        v.add_argument("--wait", type=float, default=slots.DEFAULT_WAIT_S, help="longest wait for a free slot")
        add_org_options(v)
        v.set_defaults(func=run if verb == "run" else submit)
    b = verbs.add_parser("baseline", help="run the program head K times on free slots; prints its mean and σ")
    b.add_argument("--repeats", type=int, default=None, help="runs per slot class (default: baseline.repeats)")
    b.add_argument("--timeout", type=float, default=24 * 3600.0, help=argparse.SUPPRESS)
    add_org_options(b)
    b.set_defaults(func=baseline)
    w = verbs.add_parser("worker")  # internal (a detached run); no help= keeps it out of the verb list
    w.add_argument("exp")
    w.set_defaults(func=worker)
    p.set_defaults(func=lambda _args: p.print_help(sys.stderr) or 2)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _gate_step(paths: object) -> None:
    """Results just landed: let the gate act on them (idempotent, locked, never blocks on a run)."""
    with contextlib.suppress(AutoorgError):
        gate.step(paths, log=_say)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    agent = experiments.current_agent(paths, ctx.state)
    exp = experiments.queue_experiment(ctx, agent, args.message, budget=args.budget, seed=args.seed,
                                       spend=usage.spend(paths, agent))
    row = gate.run_experiment(ctx, exp, say=_say, wait_s=args.wait)
    print(gate.answer(ctx, row), flush=True)
    _gate_step(paths)
    if row["verdict"].startswith(("crash", "void")):
        raise RunnerError(f"{exp} {row['verdict']}; log kept at {paths.runs / exp / 'log'}")
    return 0


def submit(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    agent = experiments.current_agent(paths, ctx.state)
    exp = experiments.queue_experiment(ctx, agent, args.message, budget=args.budget, seed=args.seed,
                                       spend=usage.spend(paths, agent))
    executors.executor_for(ctx.spec).spawn_worker(paths, exp)
    print(f"{exp} submitted ({args.message}); it runs when a slot is free. The result arrives in your inbox as a "
          f"`result` message (autoorg inbox); progress: autoorg results")
    return 0


def worker(args: argparse.Namespace) -> int:
    """A detached run of a queued experiment (exp submit and the gate's runs)."""
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    try:
        row = gate.run_experiment(ctx, args.exp, say=_say)
    except AutoorgError as exc:
        row = ledger.get_experiment(paths, args.exp)
        if row["kind"] == "exp":
            with contextlib.suppress(AutoorgError):
                comms.send_message(paths, sender="autoorg", to=row["agent"], kind="result", exp=args.exp,
                                   body=f"{args.exp} ({row['description']}) could not run: {exc}")
        raise
    if row["kind"] == "exp":
        comms.send_message(paths, sender="autoorg", to=row["agent"], kind="result", exp=args.exp,
                           body=gate.answer(ctx, row))
    _say(gate.answer(ctx, row))
    _gate_step(paths)
    return 0


def baseline(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    repeats = args.repeats or gate.settings(ctx.spec).baseline_repeats
    if repeats < 1:
        raise RunnerError("--repeats must be at least 1")
    branch = ctx.branch_of(os.environ.get("AUTOORG_AGENT", ""))  # an agent's island's head; else the program's
    head = workspace.rev_parse(ctx.repo, branch)
    queued = [exp for cls in gate.slot_classes(ctx)
              for exp in gate.queue_baseline_runs(ctx, head, cls, repeats, note=" (exp baseline)")]
    _say(f"queued {len(queued)} run(s) of {branch} ({head[:10]}): {', '.join(queued)}")
    deadline = time.monotonic() + args.timeout
    while any(ledger.get_experiment(paths, e)["verdict"] in ledger.UNFINISHED for e in queued):
        if time.monotonic() > deadline:
            raise RunnerError(f"baseline runs still running after {args.timeout:.0f}s: see autoorg results --all")
        time.sleep(0.5)
    for cls in gate.slot_classes(ctx):
        stats = gate.head_stats(ctx, head, cls)
        noise = gate.noise(paths, cls)
        sigma = f"{noise.sigma:.4g} (dof {noise.dof})" if noise.sigma is not None else "unknown"
        mean = f"{stats.mean:.6g}" if stats.mean is not None else "-"
        print(f"{cls}: {ctx.task.metric} mean {mean} over {stats.n} runs of {head[:10]}; noise σ {sigma}")
    crashed = [e for e in queued if ledger.get_experiment(paths, e)["verdict"].startswith("crash")]
    if crashed:
        raise RunnerError(f"{len(crashed)} baseline run(s) crashed ({', '.join(crashed)}); see their logs in "
                          f"{paths.runs}")
    return 0
