"""`autoorg review list | approve | refuse` — a critic's review of candidates before the gate verifies them."""

from __future__ import annotations

import argparse
import json

from autoorg import comms, experiments, gate
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.experiments import ledger


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review candidates before verification (orgs with processes.review)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="candidates awaiting review, and the reviews so far")
    ls.add_argument("--json", action="store_true", help="stable JSON for scripts")
    ls.set_defaults(func=run_list)
    approve = actions.add_parser("approve", help="let the gate verify a candidate")
    approve.add_argument("exp")
    approve.add_argument("reason", nargs="*", help="optional note to the author")
    approve.set_defaults(func=run_decide, decision="approve")
    refuse = actions.add_parser("refuse", help="refuse a candidate, saying why (it is never verified)")
    refuse.add_argument("exp")
    refuse.add_argument("reason", nargs="+", help="what is wrong with its design, e.g. 'two knobs at once: "
                        "ablate LEARNING_RATE alone'")
    refuse.set_defaults(func=run_decide, decision="refuse")
    for action in (ls, approve, refuse):
        add_org_options(action)


def run_list(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    waiting = gate.awaiting_review(ctx)
    done = ledger.reviews(paths)
    if args.json:
        print(json.dumps({"role": ctx.spec.processes.review.role,
                          "awaiting": [{"exp": r["exp"], "agent": r["agent"], "description": r["description"],
                                        "metric": r["metric"], "delta": r["delta"]} for r in waiting],
                          "reviews": [{k: r[k] for k in ("exp", "reviewer", "decision", "reason", "ts")}
                                      for r in done]}, indent=2))
        return 0
    if ctx.spec.processes.review.role is None:
        print("this org has no review process: candidates go to verification unreviewed")
        return 0
    print(f"awaiting review by the {ctx.spec.processes.review.role} role: {len(waiting) or 'none'}")
    for r in waiting:
        print(f"  {r['exp']}  {r['agent']}: {r['description']}")
    for r in done:
        print(f"{r['exp']}  {r['decision']} by {r['reviewer']}" + (f": {r['reason']}" if r["reason"] else ""))
    return 0


def run_decide(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    gate.review_candidate(ctx, args.exp, comms.human_or_agent(), args.decision, " ".join(args.reason))
    print(f"{args.exp}: {'approved' if args.decision == 'approve' else 'refused'}")
    return 0
