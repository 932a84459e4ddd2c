"""The synthetic task's hidden truth: knobs and compute → val_loss, plus seeded noise. Protected.

val_loss = 1.0 + Σ knob penalties (each a bowl around a good value) + capacity (shrinks with depth) + data (shrinks
with the tokens seen), + noise. The noise is Gaussian with the task's sigma, in two parts, like real training's: most
of its variance (SHARED) is the seed's alone (initialisation, data order: any recipe trained on that seed gets the
same draw), the rest is drawn from (seed, knobs). The same run twice gives the same number, another seed another
draw, and two recipes on one seed differ by √(2·(1 − SHARED))·sigma of noise, not √2·sigma.
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import yaml

SHARED = 0.9  # the share of the noise's variance that depends on the seed only
STEPS_PER_S_AT_DEPTH_4 = 100.0  # simulated throughput: a step costs time in proportion to depth
SEQ_LEN = 128


def sigma() -> float:
    """The noise level from task.yaml (`noise: {sigma: ...}`)."""
    task = yaml.safe_load(Path(__file__).with_name("task.yaml").read_text())
    return float((task.get("noise") or {}).get("sigma", 0.01))


def steps_in(seconds: float, depth: int) -> int:
    """Steps a model of this depth makes in `seconds` of training (simulated throughput: deeper is slower)."""
    return int(seconds * STEPS_PER_S_AT_DEPTH_4 * 4 / depth)


def expected_loss(knobs: dict[str, float], tokens: float) -> float:
    """The noise-free loss of a recipe trained on `tokens` tokens."""
    lr, warmup, wd = knobs["LEARNING_RATE"], knobs["WARMUP_FRAC"], knobs["WEIGHT_DECAY"]
    depth, batch = knobs["DEPTH"], knobs["BATCH_SIZE"]
    assert lr > 0 and batch > 0 and depth >= 1, "learning rate, batch size and depth must be positive"
    loss = 1.0
    loss += 0.10 * math.log10(lr / 6e-3) ** 2
    loss += 0.40 * (warmup - 0.05) ** 2
    loss += 0.50 * (wd - 0.10) ** 2
    loss += 0.02 * math.log2(batch / 128) ** 2
    loss += 0.24 / depth
    loss += 0.08 * math.sqrt(1e6 / max(tokens, 1.0))
    return loss


def _draw(key: object) -> float:
    """A standard normal draw fixed by key."""
    rng = random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big"))
    return rng.gauss(0.0, 1.0)


def noisy_loss(knobs: dict[str, float], tokens: float, seed: int, noise: float) -> float:
    seed_part = math.sqrt(SHARED) * _draw(("seed", seed))
    recipe_part = math.sqrt(1 - SHARED) * _draw((seed, sorted(knobs.items())))
    return expected_loss(knobs, tokens) + noise * (seed_part + recipe_part)
