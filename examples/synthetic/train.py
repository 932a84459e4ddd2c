"""Synthetic training run: the file agents edit. The knobs below are the recipe; landscape.py (protected) says
how good it is. It "trains" for the budget it is given (the task's {budget}), prints progress, and writes the
recipe it trained to OUT/recipe.json, which the protected evaluate.py scores in its own process.

    python examples/synthetic/train.py --seed 1 --budget 2 --out /tmp/run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import landscape  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
# Knobs (the offline researcher rewrites these `NAME = value` lines)

LEARNING_RATE = 0.001
WARMUP_FRAC = 0.3
WEIGHT_DECAY = 0.0
DEPTH = 4
BATCH_SIZE = 64

# ---------------------------------------------------------------------------------------------------------------
# Flags

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--budget", type=float, default=2.0, help="seconds of training")
parser.add_argument("--out", type=Path, default=Path(os.environ.get("AUTOORG_OUT", ".")),
                    help="folder for the trained recipe (default: $AUTOORG_OUT)")
args = parser.parse_args()

# ---------------------------------------------------------------------------------------------------------------
# Train for 90% of the budget (the rest is for evaluation), reporting a few times on the way. The compute is
# simulated: the steps a run gets follow from the time it trains for, at landscape's fixed throughput.

knobs = {"LEARNING_RATE": LEARNING_RATE, "WARMUP_FRAC": WARMUP_FRAC, "WEIGHT_DECAY": WEIGHT_DECAY,
         "DEPTH": DEPTH, "BATCH_SIZE": BATCH_SIZE}
sigma = landscape.sigma()
train_seconds = 0.9 * args.budget
start = time.monotonic()
for report in range(1, 5):
    time.sleep(max(0.0, start + train_seconds * report / 4 - time.monotonic()))
    step = landscape.steps_in(train_seconds * report / 4, DEPTH)
    tokens = step * BATCH_SIZE * landscape.SEQ_LEN
    train_loss = landscape.noisy_loss(knobs, tokens, args.seed + report, sigma) + 0.05
    print("@metric " + json.dumps({"step": step, "train_loss": round(train_loss, 5)}), flush=True)

# ---------------------------------------------------------------------------------------------------------------
# Hand the trained recipe to the evaluator

# The compute is the simulated training time (it sets the tokens); the wall clock is reported beside it, since a
# loaded machine oversleeps by milliseconds that bought no training.
wall_train_s = time.monotonic() - start
steps = landscape.steps_in(train_seconds, DEPTH)
tokens = steps * BATCH_SIZE * landscape.SEQ_LEN
args.out.mkdir(parents=True, exist_ok=True)
(args.out / "recipe.json").write_text(json.dumps(knobs) + "\n")
# Our own estimate, as progress for the dashboard: the result is evaluate.py's, measured after this process ends.
val_loss = landscape.noisy_loss(knobs, tokens, args.seed, sigma)
print(f"trained {steps} steps on {tokens} tokens in {wall_train_s:.2f}s; recipe in {args.out / 'recipe.json'}")
print("@metric " + json.dumps({"final": True, "val_loss": round(val_loss, 6), "steps": steps, "tokens": tokens,
                               "train_s": round(train_seconds, 3), "wall_train_s": round(wall_train_s, 3)}),
      flush=True)
