"""val_bpb: bits per byte of a model on the fixed validation tokens. The task's metric; lower is better.
`--heldout` scores the held-out split instead (prepare.py's third split): autoorg scores the gate's runs on it and
no agent sees those numbers.

Protected, and run by autoorg in its own process on the checkpoint `train.py --save` wrote, from the program
head's copy of this file, after checking the data's checksums: nothing in train.py changes how a run is measured.
Bits per byte do not depend on the tokenizer: the summed cross-entropy (in bits) of every scored token is
divided by the number of UTF-8 bytes those tokens stand for. BOS tokens stand for no bytes and are skipped.

The scored tokens are fixed: the first EVAL_TOKENS targets of val.bin (HELDOUT_TOKENS of heldout.bin; all of it
when shorter), cut into consecutive windows of the model's context length, in order. The model sees each window on
its own.

Standalone, on a checkpoint written by `train.py --save PATH` (a torch.export program of the model, with its
config; this file never imports train.py, so a measure runs no editable code but the model's own graph):

    python nanochat/evaluate.py PATH [--heldout]
    python nanochat/evaluate.py PATH --heldout-to FILE   # val_bpb, then the held-out score's line into FILE

`--heldout-to FILE` scores both splits in one process (loading an exported model costs more CPU than scoring it):
val_bpb on stdout as usual, then the held-out split's final line written to FILE, which autoorg keeps out of the
run's log. An empty FILE scores validation only.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import prepare
import torch
import torch.nn.functional as F

EVAL_TOKENS = 2**16  # targets scored (about 200 KB of text); fixed for every run so that numbers compare
# The held-out split only checks a promotion's gain (the gate's runs, never an agent's number): a quarter of the
# tokens is plenty for a gain of whole hundredths, and it is scored on every gate run's slot, after training. On
# 2**16 it took a cpu gate run's evaluation from ~8 s (val_bpb) to ~14 s (benchmarks/first_promotion.py --timeline).
HELDOUT_TOKENS = 2**14
CAUSAL_TOLERANCE = 1e-2  # largest logit change allowed at positions before an edited token


class EvaluationError(Exception):
    """The model cannot be measured fairly (it looks at future tokens, or returns the wrong shape)."""


def autocast_for(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def check_causal(model: torch.nn.Module, window: torch.Tensor, vocab_size: int) -> None:
    """Change the second half of one window; the logits of the first half must not move.

    A model that peeks at the tokens it predicts would score far better than it is, so it is not scored.
    """
    half = window.size(1) // 2
    edited = window.clone()
    edited[:, half:] = (edited[:, half:] + 1) % vocab_size
    before, after = model(window).float(), model(edited).float()
    expected = (window.size(0), window.size(1), vocab_size)
    if tuple(before.shape) != expected:
        raise EvaluationError(f"model(idx) must return logits of shape {expected}, got {tuple(before.shape)}")
    moved = (before[:, :half] - after[:, :half]).abs().max().item()
    if not moved <= CAUSAL_TOLERANCE:
        raise EvaluationError(f"model is not causal: earlier logits moved by {moved:.3g} when later tokens "
                              "changed")


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, seq_len: int, device: torch.device | str, batch_size: int = 16,
                 data: Path | None = None, split: str = "val") -> float:
    """Bits per byte of `model` (called as `model(idx) -> logits (B, T, vocab)`) on the fixed tokens of `split`
    (`val`, or `heldout`).

    `seq_len` is the context the model was trained for; `batch_size` only changes speed.
    """
    device = torch.device(device)
    where = data or prepare.data_dir()
    meta = prepare.load_meta(where)
    tokens = prepare.load_tokens(split, where)
    token_bytes = torch.from_numpy(prepare.load_token_bytes(where).astype(np.int64)).to(device)
    n = min(EVAL_TOKENS if split == "val" else HELDOUT_TOKENS, len(tokens) - 1)
    assert n > 0 and seq_len > 0, "need validation tokens and a positive context"
    stream = torch.from_numpy(np.asarray(tokens[: n + 1], dtype=np.int64)).to(device)
    starts = list(range(0, n, seq_len))
    was_training = model.training
    model.eval()
    total_bits = 0.0
    total_bytes = 0
    with autocast_for(device):
        check_causal(model, stream[None, : min(seq_len, n)], meta["vocab_size"])
        full = [s for s in starts if s + seq_len <= n]
        tail = [s for s in starts if s + seq_len > n]  # the last, shorter window
        groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[s] for s in tail]
        for group in groups:
            length = min(seq_len, n - group[0])
            x = torch.stack([stream[s : s + length] for s in group])
            y = torch.stack([stream[s + 1 : s + 1 + length] for s in group])
            logits = model(x).float()
            nats = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
            weight = token_bytes[y.reshape(-1)]
            total_bits += (nats * (weight > 0)).sum().item() / math.log(2)
            total_bytes += int(weight.sum().item())
    model.train(was_training)
    assert total_bytes > 0, "validation tokens cover no bytes"
    return total_bits / total_bytes


class SavedModel(torch.nn.Module):
    """A model written by `train.py --save`: its exported graph, called as `model(idx) -> logits`."""

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        self.graph = program.module()

    def train(self, mode: bool = True) -> SavedModel:
        self.training = mode  # the graph was exported in eval mode and has no mode of its own
        return self

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.graph(idx)


def load_checkpoint(path: str) -> tuple[SavedModel, dict]:
    """The saved model and what train.py wrote about it (`config`, and the `device` it was exported on)."""
    with open(path, "rb") as fh:  # a missing file says so; a file that is no archive is refused before torch tries
        if not zipfile.is_zipfile(fh):
            raise ValueError("not a file written by `train.py --save`")
    extra = {"nanochat.json": ""}
    program = torch.export.load(path, extra_files=extra)
    return SavedModel(program), json.loads(extra["nanochat.json"])


def main(argv: list[str] | None = None) -> int:
    parser = prepare.OneLineParser(prog="evaluate.py", description="val_bpb of a train.py --save checkpoint")
    parser.add_argument("checkpoint", help="file written by `train.py --save PATH`")
    parser.add_argument("--device", help="where to run it (default: the device it was trained on)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--heldout", action="store_true", help="score the held-out split instead of validation")
    parser.add_argument("--heldout-to", metavar="FILE", default="",
                        help="after validation, also score the held-out split and write its final line to FILE")
    args = parser.parse_args(argv)
    try:
        model, info = load_checkpoint(args.checkpoint)
    except (OSError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        print(f"evaluate.py: error: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    device = args.device or info["device"]
    if device == "cpu":
        prepare.keep_freed_memory()
    model.to(device)
    try:
        prepare.verify_checksums()
        val_bpb = evaluate_bpb(model, info["config"]["seq_len"], device, args.batch_size,
                               split="heldout" if args.heldout else "val")
    except prepare.PrepareError as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    print("@metric " + json.dumps({"final": True, "val_bpb": val_bpb}), flush=True)
    if args.heldout_to:
        try:
            heldout_bpb = evaluate_bpb(model, info["config"]["seq_len"], device, args.batch_size, split="heldout")
        except prepare.PrepareError as exc:  # validation stands; the held-out score is simply missing
            print(f"evaluate.py: no held-out score: {exc}", file=sys.stderr)
            return 0
        Path(args.heldout_to).write_text("@metric " + json.dumps({"final": True, "val_bpb": heldout_bpb}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
