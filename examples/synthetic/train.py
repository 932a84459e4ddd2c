"""Synthetic training run: the file agents edit. The knobs below are the recipe; landscape.py (protected) says
how good it is. It "trains" for the budget it is given (the task's {budget}), prints progress and a final line.

    python examples/synthetic/train.py --seed 1 --budget 2
"""

from __future__ import annotations

import argparse
import json
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
args = parser.parse_args()

# ---------------------------------------------------------------------------------------------------------------
# Train: spend 90% of the budget "training" (the rest is for evaluation), reporting a few times on the way

knobs = {"LEARNING_RATE": LEARNING_RATE, "WARMUP_FRAC": WARMUP_FRAC, "WEIGHT_DECAY": WEIGHT_DECAY,
         "DEPTH": DEPTH, "BATCH_SIZE": BATCH_SIZE}
sigma = landscape.sigma()
start = time.monotonic()
train_until = start + 0.9 * args.budget
for report in range(1, 5):
    time.sleep(max(0.0, start + 0.9 * args.budget * report / 4 - time.monotonic()))
    step = landscape.steps_in(time.monotonic() - start, DEPTH)
    tokens = step * BATCH_SIZE * landscape.SEQ_LEN
    train_loss = landscape.noisy_loss(knobs, tokens, args.seed + report, sigma) + 0.05
    print("@metric " + json.dumps({"step": step, "train_loss": round(train_loss, 5)}), flush=True)

# ---------------------------------------------------------------------------------------------------------------
# Evaluate on the compute actually spent

train_s = time.monotonic() - start
steps = landscape.steps_in(train_s, DEPTH)
tokens = steps * BATCH_SIZE * landscape.SEQ_LEN
val_loss = landscape.noisy_loss(knobs, tokens, args.seed, sigma)
print(f"trained {steps} steps on {tokens} tokens in {train_s:.2f}s")
print("@metric " + json.dumps({"final": True, "val_loss": round(val_loss, 6), "steps": steps, "tokens": tokens,
                               "train_s": round(train_s, 3)}), flush=True)
