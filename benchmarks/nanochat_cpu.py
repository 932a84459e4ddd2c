"""How well and how reproducibly the nanochat CPU preset trains: val_bpb over seeds, against a unigram model.

    python benchmarks/nanochat_cpu.py                      # 5 seeds, 60 s each (about 6 minutes on 2 cores)
    python benchmarks/nanochat_cpu.py --seeds 3 --budget 30
    python benchmarks/nanochat_cpu.py -- --depth 3         # flags after -- go to train.py
    python benchmarks/nanochat_cpu.py --core 0 --seeds 3   # on one core, as an org's CPU slot runs it
    python benchmarks/nanochat_cpu.py --core 1 --reference # the tuned configuration of nanochat/reference.yaml

Runs train.py exactly as autoorg's runner does (a subprocess from the repository root) and prints the figures.
The machine's load average is printed too: other processes on the cores slow training and move the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "nanochat"))

import evaluate  # noqa: E402  (nanochat/ is not a package; its modules import each other by name)
import prepare  # noqa: E402


def unigram_bpb() -> float:
    """Bits per byte of token frequencies from train (add-one smoothed), on evaluate.py's scored tokens."""
    meta = prepare.load_meta()
    counts = np.bincount(prepare.load_tokens("train"), minlength=meta["vocab_size"]).astype(np.float64) + 1
    log2_p = np.log2(counts / counts.sum())
    val = prepare.load_tokens("val")
    targets = np.asarray(val[1 : min(evaluate.EVAL_TOKENS, len(val) - 1) + 1], dtype=np.int64)
    token_bytes = prepare.load_token_bytes()[targets]
    return float(-(log2_p[targets] * (token_bytes > 0)).sum() / token_bytes.sum())


def run_seed(seed: int, budget: float, extra: list[str], preset: str = "cpu", echo: bool = False,
             core: int | None = None) -> dict:
    """One train.py run as autoorg's runner starts it (on one `core` with one thread, like a CPU slot); `echo`
    shows its log as it comes (long GPU runs)."""
    command = [sys.executable, "-u", "nanochat/train.py", "--preset", preset, "--budget", str(budget),
               "--seed", str(seed), *extra]
    started = time.monotonic()
    stderr = None if echo else subprocess.STDOUT  # echoed runs write their errors to the terminal
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if core is not None else None
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                            preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}))
    assert proc.stdout is not None
    finals, log = [], []
    for line in proc.stdout:
        log.append(line)
        if echo:
            print(f"    {line.rstrip()}", flush=True)
        if line.startswith("@metric "):
            metric = json.loads(line[len("@metric "):])
            if metric.get("final"):
                finals.append(metric)
    code = proc.wait()
    if code != 0 or len(finals) != 1:
        tail = "" if echo else "".join(log[-20:]).strip()
        sys.exit(f"seed {seed} failed (exit {code})" + (f":\n{tail}" if tail else ""))
    final = finals[0]
    return {**final, "wall_s": time.monotonic() - started, "tok_per_s": final["tokens"] / final["train_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per run")
    parser.add_argument("--core", type=int, help="run train.py on this core only (an org's CPU slot is one core)")
    parser.add_argument("--reference", action="store_true",
                        help="train with nanochat/reference.yaml's flags (the tuned configuration)")
    parser.add_argument("train_args", nargs="*", help="extra flags for train.py (after --)")
    args = parser.parse_args()
    if args.reference:
        args.train_args = [*yaml.safe_load((REPO / "nanochat" / "reference.yaml").read_text())["train_args"],
                           *args.train_args]

    subprocess.run([sys.executable, "nanochat/prepare.py"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    meta = prepare.load_meta()
    cores = 1 if args.core is not None else len(os.sched_getaffinity(0))
    load_start = os.getloadavg()[0]
    extra = " ".join(args.train_args)
    print(f"nanochat cpu preset: budget {args.budget:g} s, seeds 0-{args.seeds - 1}, {cores} core(s), "
          f"data {meta['source']} ({meta['corpus_sha256'][:12]}, vocab {meta['vocab_size']})"
          + (f", train.py {extra}" if extra else ""), flush=True)
    runs = []
    for seed in range(args.seeds):
        run = run_seed(seed, args.budget, args.train_args, core=args.core)
        runs.append(run)
        print(f"  seed {seed}: val_bpb {run['val_bpb']:.4f}  steps {run['steps']}  tok/s {run['tok_per_s']:,.0f}  "
              f"warm-up {run['warmup_s']:.1f} s  wall {run['wall_s']:.1f} s  load {os.getloadavg()[0]:.2f}",
              flush=True)

    bpb = [r["val_bpb"] for r in runs]
    mean = statistics.fmean(bpb)
    std = statistics.stdev(bpb) if len(bpb) > 1 else 0.0
    unigram = unigram_bpb()
    print(f"val_bpb {mean:.4f} ± {std:.4f} (std {std / mean:.2%} of the mean, n={len(bpb)})")
    if std > 0:
        # runs per side for a 1% gain to stand 2 standard errors clear: 0.01 * mean >= 2 * std * sqrt(2 / k)
        per_side = math.ceil(2 * (2 * std / (0.01 * mean)) ** 2)
        print(f"a 1% improvement is 2 standard errors clear with {per_side} run(s) per side")
    print(f"steps {statistics.fmean(r['steps'] for r in runs):.0f}, "
          f"tok/s {statistics.fmean(r['tok_per_s'] for r in runs):,.0f}, "
          f"params {runs[0]['params']:,}, wall {statistics.fmean(r['wall_s'] for r in runs):.1f} s per run")
    print(f"unigram baseline val_bpb {unigram:.4f}: the model is {1 - mean / unigram:.1%} below it")
    print(f"load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
