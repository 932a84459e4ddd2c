"""`autoorg bench`: orgs x tasks x repeats at equal compute, each a headless org from a history-free snapshot of
the task, and the report of what they verified.

  suite    the suite YAML: orgs, tasks, repeats, the compute per org, the baselines, references
  cell     one org on one task for one repeat (its own process, pinned to its share of the cores)
  figures  one org's figures from its ledger rows (also what a single org's report uses)
  summary  mean ± spread over repeats; a permutation test between two orgs
  report   report.md, report.html, report.json and the progress plots
  run      the cells, `parallel` at a time, resumable, a progress line per org
"""

from __future__ import annotations

from autoorg.bench.run import Bench, default_out, load_results
from autoorg.bench.suite import Suite, load_suite

__all__ = ["Bench", "Suite", "default_out", "load_results", "load_suite"]
