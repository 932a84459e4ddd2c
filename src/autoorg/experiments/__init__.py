"""Experiments: the org a run belongs to, what it may change, queueing, running one under its budget, the ledger.

  context   OrgContext: state.json, org.yaml and the task file, read once
  policy    the task's editable and protected paths
  queue     commit an agent's change and add a `queued` ledger row
  run       execute a queued run: export, setup, slot, command under budget, result
  process   one command under a time limit in its own process group; its metric lines
  sandbox   the seal of a run: read-only org, repo and data, the evaluation data hidden, an allow-listed env,
            every descendant killed, its whole tree's CPU time (namespaces, or a subreaper where there are none)
  leaks     a copy of the evaluation data in a run's tree
  ledger    the SQLite ledger (its only writer) and results.tsv
"""

from __future__ import annotations

from autoorg.experiments.context import OrgContext, current_agent, load_context, resolve_org_code
from autoorg.experiments.policy import boundary_violations
from autoorg.experiments.queue import new_seed, queue_experiment, queue_run
from autoorg.experiments.run import ensure_setup, execute, judge_outcome, substitute

__all__ = ["OrgContext", "boundary_violations", "current_agent", "ensure_setup", "execute", "judge_outcome",
           "load_context", "new_seed", "queue_experiment", "queue_run", "resolve_org_code", "substitute"]
