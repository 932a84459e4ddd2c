"""The synthetic task's evaluator: the recipe a run trained → val_loss. Protected; autoorg runs it in its own process
after training, from the program head's copy of the protected files, so nothing in train.py can change it.

The compute is the harness's, not the run's: the tokens follow from the budget autoorg passes (train.py trains for
90% of it at landscape's fixed throughput), whatever the run says it did. `--heldout` scores the same recipe on
the held-out split: another noise stream and a slightly different landscape, whose numbers no agent sees.

    python examples/synthetic/evaluate.py --recipe OUT/recipe.json --seed 1 --budget 2 [--heldout]
    python examples/synthetic/evaluate.py ... --heldout-to FILE   # also the held-out line, into FILE
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import landscape  # noqa: E402

TRAIN_FRAC = 0.9  # the share of the budget train.py trains for (the rest was evaluation's)
KNOBS = ("LEARNING_RATE", "WARMUP_FRAC", "WEIGHT_DECAY", "DEPTH", "BATCH_SIZE")
# The held-out split generalizes a little worse, and prefers a slightly smaller learning rate: a recipe tuned to
# the last digit of the val noise does not carry over.
HELDOUT_GAP = 0.02
HELDOUT_LR_OPTIMUM = 5e-3


def read_recipe(path: Path) -> dict[str, float]:
    """The knobs train.py wrote; anything else (a missing knob, a string, a bool, NaN) is refused."""
    try:
        recipe = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"evaluate.py: error: cannot read the recipe {path}: {exc}")
    if not isinstance(recipe, dict) or sorted(recipe) != sorted(KNOBS):
        sys.exit(f"evaluate.py: error: the recipe must hold exactly the knobs {', '.join(KNOBS)}")
    for name, value in recipe.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            sys.exit(f"evaluate.py: error: knob {name} must be a finite number, got {value!r}")
    if recipe["LEARNING_RATE"] <= 0 or recipe["BATCH_SIZE"] <= 0 or recipe["DEPTH"] < 1:
        sys.exit("evaluate.py: error: learning rate, batch size and depth must be positive")
    return recipe


def heldout_loss(knobs: dict[str, float], tokens: float, seed: int, noise: float) -> float:
    lr = knobs["LEARNING_RATE"]
    shift = 0.10 * (math.log10(lr / HELDOUT_LR_OPTIMUM) ** 2 - math.log10(lr / 6e-3) ** 2)
    return landscape.noisy_loss(knobs, tokens, seed + 7_919_000, noise) + HELDOUT_GAP + shift


def score(knobs: dict[str, float], budget: float, seed: int, heldout: bool = False) -> float:
    """val_loss (or the held-out loss) of a recipe trained for `budget` seconds with `seed`: what main() prints,
    and what the bench's simulated orgs call in-process."""
    train_seconds = TRAIN_FRAC * budget
    steps = landscape.steps_in(train_seconds, knobs["DEPTH"])
    tokens = steps * knobs["BATCH_SIZE"] * landscape.SEQ_LEN
    return (heldout_loss if heldout else landscape.noisy_loss)(knobs, tokens, seed, _sigma())


@functools.lru_cache(maxsize=1)
def _sigma() -> float:
    return landscape.sigma()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, required=True, help="the recipe.json train.py wrote")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--budget", type=float, required=True, help="the run's budget in seconds (autoorg's)")
    parser.add_argument("--heldout", action="store_true", help="score on the held-out split")
    parser.add_argument("--heldout-to", metavar="FILE", default="",
                        help="after val_loss, also score the held-out split and write its final line to FILE")
    args = parser.parse_args()
    knobs = read_recipe(args.recipe)
    train_seconds = TRAIN_FRAC * args.budget
    steps = landscape.steps_in(train_seconds, knobs["DEPTH"])
    tokens = steps * knobs["BATCH_SIZE"] * landscape.SEQ_LEN
    score = heldout_loss if args.heldout else landscape.noisy_loss
    val_loss = score(knobs, tokens, args.seed, landscape.sigma())
    print("@metric " + json.dumps({"final": True, "val_loss": round(val_loss, 6), "steps": steps, "tokens": tokens,
                                   "train_s": round(train_seconds, 3)}), flush=True)
    if args.heldout_to:
        held = heldout_loss(knobs, tokens, args.seed, landscape.sigma())
        Path(args.heldout_to).write_text("@metric " + json.dumps({"final": True, "val_loss": round(held, 6)}) + "\n")


if __name__ == "__main__":
    main()
