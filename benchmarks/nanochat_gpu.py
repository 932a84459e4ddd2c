"""The nanochat GPU preset on this machine's GPU: tok/s, MFU and val_bpb at the preset's 300-s budget.

    python benchmarks/nanochat_gpu.py                        # one 300 s run, seed 0
    python benchmarks/nanochat_gpu.py --budget 20            # a quick look (compile time is extra)
    python benchmarks/nanochat_gpu.py --seeds 2 -- --device-batch 128   # flags after -- go to train.py

Runs train.py as autoorg's runner does (a subprocess from the repository root), echoes its log as it goes and
prints the figures last. Needs CUDA and prepared data (`python nanochat/prepare.py ...`); with none prepared it
prepares the default offline corpus, which is small for a GPU: the run then goes through it many times.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "nanochat"))

import prepare  # noqa: E402  (nanochat/ is not a package)
import torch  # noqa: E402
from nanochat_cpu import run_seed  # noqa: E402  (the benchmark beside this one)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per run")
    parser.add_argument("train_args", nargs="*", help="extra flags for train.py (after --)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("nanochat_gpu.py: error: no CUDA device; the CPU figures come from benchmarks/nanochat_cpu.py",
              file=sys.stderr)
        return 2

    subprocess.run([sys.executable, "nanochat/prepare.py"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    meta = prepare.load_meta()
    gpu = torch.cuda.get_device_name(0)
    extra = " ".join(args.train_args)
    print(f"nanochat gpu preset on {gpu}: budget {args.budget:g} s, seeds 0-{args.seeds - 1}, torch "
          f"{torch.__version__}, data {meta['source']} ({meta['corpus_sha256'][:12]}, vocab {meta['vocab_size']}, "
          f"{meta['train_tokens']:,} train tokens)" + (f", train.py {extra}" if extra else ""), flush=True)
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args.budget, args.train_args, preset="gpu", echo=True))

    print(f"nanochat gpu preset on {gpu}, {args.budget:g} s budget:")
    for seed, run in enumerate(runs):
        mfu = f"{run['mfu']:.1%}" if "mfu" in run else "n/a (GPU peak unknown)"
        epochs = run["tokens"] / meta["train_tokens"]
        print(f"  seed {seed}: val_bpb {run['val_bpb']:.4f}  steps {run['steps']}  tok/s {run['tok_per_s']:,.0f}  "
              f"MFU {mfu}  params {run['params']:,}  peak mem {run['peak_mem_mb'] / 1024:.1f} GiB  "
              f"warm-up {run['warmup_s']:.1f} s  train {run['train_s']:.1f} s  wall {run['wall_s']:.1f} s  "
              f"epochs {epochs:.1f}")
    if len(runs) > 1:
        bpb = [r["val_bpb"] for r in runs]
        print(f"val_bpb {statistics.fmean(bpb):.4f} ± {statistics.stdev(bpb):.4f} (n={len(bpb)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
