"""The verification gate: statistics (pure), a head's numbers, screen / verify / promote, telling the org.

  stats     Student-t quantiles, pooled σ, the noise band
  heads     the gate's settings, the org's noise, a program head's runs and mean
  heldout   a promotion's held-out check (val overfitting)
  announce  the answer an agent reads, messages, board posts
  review    a critic's approval or refusal of a candidate before verification (processes.review)
  guard     only the gate moves the program branch: a foreign move is reverted and reported
  islands   island branches and the migration of the best island's head (processes.migrate)
  verify    screening, baselines, re-runs, the decision, promotion; `step` (see its docstring)
"""

from __future__ import annotations

from autoorg.gate.announce import answer, heldout_gain, publish_board
from autoorg.gate.heads import (
           GateSettings,
           HeadStats,
           baseline_need,
           head_stats,
           noise,
           settings,
           slot_classes,
)
from autoorg.gate.islands import island_summary
from autoorg.gate.review import ReviewError, awaiting_review, review_candidate
from autoorg.gate.stats import Noise, band, normal_cdf, pooled_noise, t_quantile
from autoorg.gate.verify import fresh_seeds, gate_lock, queue_baseline_runs, run_experiment, screen, step

__all__ = ["GateSettings", "HeadStats", "Noise", "ReviewError", "answer", "awaiting_review", "band", "baseline_need",
           "fresh_seeds", "gate_lock", "head_stats", "heldout_gain", "island_summary", "noise", "normal_cdf", "pooled_noise", "publish_board", "queue_baseline_runs",
           "review_candidate", "run_experiment", "screen", "settings", "slot_classes", "step", "t_quantile"]
