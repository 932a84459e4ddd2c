"""Train a small GPT for a fixed wall-clock budget and report val_bpb. The file agents edit.

    python nanochat/train.py --preset cpu --budget 60 --seed 0     # 1-2 CPU cores
    python nanochat/train.py --preset gpu --budget 300 --seed 0    # one H100: bf16, torch.compile, fused attention

Every knob is a module-level constant below (edit it in place) and a flag of the same name (--matrix-lr 0.03).
Stdout carries `@metric {json}` lines for autoorg; everything else printed is log. val_bpb comes from the
protected evaluate.py on the fixed validation tokens that the protected prepare.py made.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import evaluate
import numpy as np
import prepare
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# --------------------------------------------------------------------------------------------------------------
# Knobs. One `NAME = value  # why` per line so that programs can rewrite them. Size and batch have a value per
# preset: the plain name is the cpu preset's, GPU_<name> the gpu preset's.

# Model shape: DEPTH is the one size dial, the width follows it
DEPTH = 3  # transformer blocks (cpu preset)
GPU_DEPTH = 8  # transformer blocks (gpu preset)
ASPECT_RATIO = 64  # width = DEPTH * ASPECT_RATIO, rounded up to whole heads
HEAD_DIM = 64  # attention head size (cpu preset)
GPU_HEAD_DIM = 128  # attention head size (gpu preset): fused attention kernels run fastest at 128
MLP_RATIO = 4  # MLP hidden width over model width
LOGIT_SOFTCAP = 15.0  # logits = cap * tanh(logits / cap): bounded, so early logits cannot run away; 0 = off
ROPE_BASE = 10000.0  # rotary embedding base; larger suits longer contexts
VALUE_EMBED_EVERY = 1  # token embeddings added to attention values every n-th layer from the last; 0 = off
GPU_VALUE_EMBED_EVERY = 2  # the same for the gpu preset: each one's lookup and gradient scatter cost memory time
WINDOW_PATTERN = "L"  # attention span per layer, cycled: L = whole context, S = SHORT_WINDOW tokens
SHORT_WINDOW = 64  # span of S layers (sliding-window attention)

# Data and batch
SEQ_LEN = 256  # context length (cpu preset)
GPU_SEQ_LEN = 2048  # context length (gpu preset)
BATCH_TOKENS = 8192  # tokens per optimizer step (cpu preset)
GPU_BATCH_TOKENS = 262144  # tokens per optimizer step (gpu preset)
DEVICE_BATCH = 16  # sequences per forward pass, gradients accumulate to BATCH_TOKENS (cpu: cache-sized)
GPU_DEVICE_BATCH = 64  # sequences per forward pass (gpu preset)

# Optimizers: Muon for the hidden matrices, AdamW for embeddings, head and scalars
MATRIX_LR = 0.02  # Muon learning rate
EMBEDDING_LR = 0.2  # AdamW, token and value embeddings (scaled by 1/sqrt(width/768) like the head)
UNEMBEDDING_LR = 0.004  # AdamW, lm_head
SCALAR_LR = 0.5  # AdamW, per-layer mixing scalars
ADAM_BETA1 = 0.8  # AdamW momentum; lower than the usual 0.9 suits short runs
ADAM_BETA2 = 0.95  # AdamW second-moment decay
MUON_MOMENTUM = 0.95  # Muon's Nesterov momentum, reached after MUON_MOMENTUM_STEPS
MUON_MOMENTUM_STEPS = 300  # ramp from 0.85 so the first steps are not dominated by a cold buffer
WEIGHT_DECAY = 0.0  # decoupled weight decay on Muon's matrices

# Schedule: fractions of the time budget, so a faster step means more steps, not a different schedule
LR_WARMUP_FRAC = 0.0  # linear warmup; Muon and QK-norm make it unnecessary at this scale
WARMDOWN_FRAC = 0.4  # linear decay to FINAL_LR_FRAC over the last part of the budget
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak

# Run
WARMUP_STEPS = 1  # off-clock steps at learning rate 0 (compilation, allocator warm-up); weights do not move
LOG_EVERY = 10  # steps between progress lines
PRESET_BUDGET = {"cpu": 60, "gpu": 300}  # default seconds of training per preset


# --------------------------------------------------------------------------------------------------------------
# Model: rotary embeddings, QK-norm, ReLU^2 MLP, untied head, logit softcap, value embeddings, sliding windows


@dataclass
class GPTConfig:
    vocab_size: int
    seq_len: int
    depth: int
    width: int
    head_dim: int
    mlp_ratio: int
    logit_softcap: float
    rope_base: float
    value_embed_every: int
    window_pattern: str
    short_window: int

    def window(self, layer: int) -> int:
        kind = self.window_pattern[layer % len(self.window_pattern)]
        return self.seq_len if kind == "L" else self.short_window

    def has_value_embed(self, layer: int) -> bool:
        # counted back from the last layer, the one closest to the output; costs parameters, not FLOPs
        every = self.value_embed_every
        return every > 0 and (self.depth - 1 - layer) % every == 0


def norm(x: torch.Tensor) -> torch.Tensor:
    # parameter-free RMSNorm: learned gains add little and cost optimizer state
    return F.rms_norm(x, (x.size(-1),))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.heads, self.head_dim, self.window = cfg.width // cfg.head_dim, cfg.head_dim, cfg.window(layer)
        # decided by the config, not by each call's length: the saved model (torch.export) has one graph for all
        self.causal_only = self.window >= cfg.seq_len
        self.q = nn.Linear(cfg.width, cfg.width, bias=False)
        self.k = nn.Linear(cfg.width, cfg.width, bias=False)
        self.v = nn.Linear(cfg.width, cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.ve_gate = nn.Parameter(torch.tensor(0.5)) if cfg.has_value_embed(layer) else None

    def forward(self, x, cos, sin, value_embed):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.heads, self.head_dim)
        k = self.k(x).view(B, T, self.heads, self.head_dim)
        v = self.v(x).view(B, T, self.heads, self.head_dim)
        if value_embed is not None:  # embeddings are fp32 under autocast: cast, or v (and attention) would be too
            v = v + self.ve_gate * value_embed.view_as(v).to(v.dtype)
        # QK-norm: attention logits stay bounded, so high learning rates cannot collapse attention onto one token
        q, k = rotate(norm(q), cos, sin), rotate(norm(k), cos, sin)
        q, k = q.to(v.dtype), k.to(v.dtype)  # autocast may have upcast them
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.causal_only:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fused (cuDNN or flash) on CUDA
        else:
            pos = torch.arange(T, device=x.device)
            offset = pos[:, None] - pos[None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=(offset >= 0) & (offset < self.window))
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.width, cfg.mlp_ratio * cfg.width, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.width, cfg.width, bias=False)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())  # ReLU^2: cheap, and better than GELU in small GPTs


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, value_embed):
        x = x + self.attn(norm(x), cos, sin, value_embed)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.width % cfg.head_dim == 0 and cfg.head_dim % 2 == 0, "width must be whole, even-sized heads"
        assert set(cfg.window_pattern) <= {"L", "S"} and cfg.window_pattern, "window pattern uses L and S"
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.width)
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(cfg.vocab_size, cfg.width) for i in range(cfg.depth) if cfg.has_value_embed(i)
        })
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        # every layer sees a learned mix of the running residual and the first embedding (x0)
        self.resid_scales = nn.Parameter(torch.ones(cfg.depth))
        self.x0_scales = nn.Parameter(torch.full((cfg.depth,), 0.1))
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)  # untied: input and output roles differ
        inv_freq = cfg.rope_base ** (-torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim)
        angles = torch.outer(torch.arange(cfg.seq_len, dtype=torch.float32), inv_freq)[None, :, None, :]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        for emb in [self.wte, *self.value_embeds.values()]:
            nn.init.normal_(emb.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)  # near-uniform predictions at the start
        bound = math.sqrt(3.0 / self.cfg.width)  # uniform with std 1/sqrt(fan_in)
        for block in self.blocks:
            for linear in (block.attn.q, block.attn.k, block.attn.v, block.mlp.fc):
                nn.init.uniform_(linear.weight, -bound, bound)
            # output projections start at zero: each block begins as the identity on the residual stream
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        assert self.cfg.seq_len >= T, f"sequence of {T} tokens is longer than the context {self.cfg.seq_len}"
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = x0 = norm(self.wte(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_scales[i] * x + self.x0_scales[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, cos, sin, ve)
        logits = self.lm_head(norm(x)).float()
        cap = self.cfg.logit_softcap
        if cap > 0:
            # 2c * sigmoid(2x / c) = c * tanh(x / c) + c; the constant cancels in the softmax, and on CPUs sigmoid
            # is several times faster than tanh (as a multiply is than a divide)
            logits = (2 * cap) * torch.sigmoid(logits * (2 / cap))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    def flops_per_token(self) -> int:
        """Training FLOPs per token, counted as MFU is usually counted (PaLM's appendix B, nanoGPT, autoresearch).

        6 per matrix weight (forward + backward) plus 12 x width x span per layer for attention's two products,
        the span being the whole context (or the window) as if unmasked; causal kernels skip about half of that.
        """
        cfg = self.cfg
        matrices = sum(p.numel() for p in self.blocks.parameters() if p.dim() == 2) + self.lm_head.weight.numel()
        attention = sum(12 * cfg.width * min(cfg.window(i), cfg.seq_len) for i in range(cfg.depth))
        return 6 * matrices + attention


# --------------------------------------------------------------------------------------------------------------
# Optimizers: Muon orthogonalizes each hidden matrix's momentum so every direction moves at the same rate


def newton_schulz(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately replace G = U S V^T by U V^T with a quintic Newton-Schulz iteration (batched over dim 0).

    The coefficients push singular values towards 1 fast; they land in about [0.7, 1.2], which is close enough.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return (X.mT if tall else X).to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalized per matrix; matrices of one shape are orthogonalized as one batch."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float, compile: bool):
        by_shape: dict[tuple, list] = {}
        for p in params:
            assert p.dim() == 2, "Muon is for matrices"
            by_shape.setdefault(tuple(p.shape), []).append(p)
        groups = [{"params": ps} for ps in by_shape.values()]
        super().__init__(groups, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.orthogonalize = torch.compile(newton_schulz) if compile else newton_schulz

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = group["params"]
            grads = torch.stack([p.grad for p in params])
            state = self.state[params[0]]
            if "momentum" not in state:
                state["momentum"] = torch.zeros_like(grads)
            buf = state["momentum"]
            buf.lerp_(grads, 1 - group["momentum"])
            update = self.orthogonalize(grads.lerp_(buf, group["momentum"]))
            rows, cols = params[0].shape
            scale = max(1.0, rows / cols) ** 0.5  # keeps the update's RMS per element alike for tall matrices
            for p, u in zip(params, update.unbind(0), strict=True):
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(u, alpha=-group["lr"] * scale)


def build_optimizers(model: GPT, args, on_cuda: bool) -> list[torch.optim.Optimizer]:
    matrices = [p for p in model.blocks.parameters() if p.dim() == 2]
    scalars = [p for p in model.parameters() if p.dim() < 2]
    embeddings = [model.wte.weight, *(e.weight for e in model.value_embeds.values())]
    optimized = len(matrices) + len(scalars) + len(embeddings) + 1  # + lm_head
    assert optimized == len(list(model.parameters())), "every parameter needs exactly one optimizer"
    # AdamW rates were tuned at width 768; wider models take smaller steps (1/sqrt(width))
    scale = (model.cfg.width / 768) ** -0.5
    adam_groups = [
        {"params": embeddings, "lr": args.embedding_lr * scale},
        {"params": [model.lm_head.weight], "lr": args.unembedding_lr * scale},
        {"params": scalars, "lr": args.scalar_lr},
    ]
    adam = torch.optim.AdamW(adam_groups, betas=(args.adam_beta1, args.adam_beta2), eps=1e-10, weight_decay=0.0,
                             fused=on_cuda)
    muon = Muon(matrices, lr=args.matrix_lr, momentum=args.muon_momentum, weight_decay=args.weight_decay,
                compile=args.compile)
    optimizers = [adam, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def lr_multiplier(progress: float, args) -> float:
    if progress < args.lr_warmup_frac:
        return (progress + 1e-3) / args.lr_warmup_frac
    if progress <= 1 - args.warmdown_frac:
        return 1.0
    left = (1 - progress) / args.warmdown_frac
    return left + (1 - left) * args.final_lr_frac


# --------------------------------------------------------------------------------------------------------------
# Data: random windows of the train tokens; the seed fixes which


class TrainBatches:
    def __init__(self, tokens: np.ndarray, rows: int, seq_len: int, seed: int, device: torch.device):
        assert len(tokens) > seq_len + 1, f"train split has {len(tokens)} tokens, fewer than one window"
        self.tokens, self.rows, self.seq_len, self.device = tokens, rows, seq_len, device
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.rows)
        windows = np.stack([self.tokens[s : s + self.seq_len + 1] for s in starts]).astype(np.int64)
        windows = torch.from_numpy(windows)
        if self.device.type == "cuda":
            windows = windows.pin_memory().to(self.device, non_blocking=True)
        return windows[:, :-1], windows[:, 1:]


# --------------------------------------------------------------------------------------------------------------
# Flags: defaults are the constants above; --preset fills in the per-preset ones


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = prepare.OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    # run
    add("--preset", choices=["cpu", "gpu"], default="cpu", help="cpu: fp32, all allowed cores; gpu: CUDA bf16")
    add("--budget", type=float, help="seconds of training (default: cpu 60, gpu 300); warm-up is extra")
    add("--seed", type=int, default=0)
    add("--save", metavar="PATH", help="write the trained model here, self-contained (torch.export), for evaluate.py")
    add("--no-eval", dest="evaluate", action="store_false",
        help="skip the in-process val_bpb (autoorg's protected evaluator measures the --save file on its own)")
    add("--compile", action=argparse.BooleanOptionalAction, help="torch.compile (default: on for gpu)")
    # model
    add("--depth", type=int, help=f"transformer blocks (default: cpu {DEPTH}, gpu {GPU_DEPTH})")
    add("--aspect-ratio", type=int, default=ASPECT_RATIO)
    add("--head-dim", type=int, help=f"attention head size (default: cpu {HEAD_DIM}, gpu {GPU_HEAD_DIM})")
    add("--mlp-ratio", type=int, default=MLP_RATIO)
    add("--logit-softcap", type=float, default=LOGIT_SOFTCAP)
    add("--rope-base", type=float, default=ROPE_BASE)
    add("--value-embed-every", type=int,
        help=f"value embeddings every n-th layer, 0 = off (default: cpu {VALUE_EMBED_EVERY}, "
             f"gpu {GPU_VALUE_EMBED_EVERY})")
    add("--window-pattern", default=WINDOW_PATTERN)
    add("--short-window", type=int, default=SHORT_WINDOW)
    # data and batch
    add("--seq-len", type=int, help=f"context length (default: cpu {SEQ_LEN}, gpu {GPU_SEQ_LEN})")
    add("--batch-tokens", type=int, help=f"tokens/step (default: cpu {BATCH_TOKENS}, gpu {GPU_BATCH_TOKENS})")
    add("--device-batch", type=int, help=f"rows per pass (default: cpu {DEVICE_BATCH}, gpu {GPU_DEVICE_BATCH})")
    # optimizers
    add("--matrix-lr", type=float, default=MATRIX_LR)
    add("--embedding-lr", type=float, default=EMBEDDING_LR)
    add("--unembedding-lr", type=float, default=UNEMBEDDING_LR)
    add("--scalar-lr", type=float, default=SCALAR_LR)
    add("--adam-beta1", type=float, default=ADAM_BETA1)
    add("--adam-beta2", type=float, default=ADAM_BETA2)
    add("--muon-momentum", type=float, default=MUON_MOMENTUM)
    add("--muon-momentum-steps", type=int, default=MUON_MOMENTUM_STEPS)
    add("--weight-decay", type=float, default=WEIGHT_DECAY)
    # schedule
    add("--lr-warmup-frac", type=float, default=LR_WARMUP_FRAC)
    add("--warmdown-frac", type=float, default=WARMDOWN_FRAC)
    add("--final-lr-frac", type=float, default=FINAL_LR_FRAC)
    add("--warmup-steps", type=int, default=WARMUP_STEPS)
    add("--log-every", type=int, default=LOG_EVERY)
    args = parser.parse_args(argv)

    gpu = args.preset == "gpu"
    args.budget = PRESET_BUDGET[args.preset] if args.budget is None else args.budget
    args.depth = args.depth or (GPU_DEPTH if gpu else DEPTH)
    args.head_dim = args.head_dim or (GPU_HEAD_DIM if gpu else HEAD_DIM)
    if args.value_embed_every is None:  # 0 is a choice (off), so not `or`
        args.value_embed_every = GPU_VALUE_EMBED_EVERY if gpu else VALUE_EMBED_EVERY
    args.seq_len = args.seq_len or (GPU_SEQ_LEN if gpu else SEQ_LEN)
    args.batch_tokens = args.batch_tokens or (GPU_BATCH_TOKENS if gpu else BATCH_TOKENS)
    args.device_batch = args.device_batch or (GPU_DEVICE_BATCH if gpu else DEVICE_BATCH)
    args.compile = gpu and torch.cuda.is_available() if args.compile is None else args.compile
    args.device_batch = min(args.device_batch, max(args.batch_tokens // args.seq_len, 1))
    if not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, not {args.budget:g}")
    if args.batch_tokens % (args.device_batch * args.seq_len):
        parser.error(f"--batch-tokens {args.batch_tokens} is not a multiple of --device-batch x --seq-len "
                     f"({args.device_batch} x {args.seq_len})")
    if not 0 <= args.lr_warmup_frac + args.warmdown_frac <= 1:
        parser.error("--lr-warmup-frac + --warmdown-frac must lie between 0 and 1")
    return args


# --------------------------------------------------------------------------------------------------------------
# Main: set up, warm up off the clock, train until the budget is spent, evaluate, report


def emit(**metric) -> None:
    print("@metric " + json.dumps(metric), flush=True)


# On CUDA: cuDNN's fused attention first (1.6x flash-attention 2's speed on an H100 at head size 128); the others
# stay as fallbacks for shapes and masks it does not take
ATTENTION_PREFERENCE = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH]


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, for MFU; None on the CPU and on GPUs not listed."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}.items():
        if key in name:
            return value
    return None


def save_for_evaluation(model: GPT, cfg: GPTConfig, path: str) -> None:
    """Write the trained model as evaluate.py reads it on its own: a torch.export program (the graph and weights,
    taking idx of any batch and up to seq_len tokens to logits) and this config as JSON beside it. evaluate.py
    runs the program without importing this file: the protected evaluator depends on no editable file."""
    model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, cfg.seq_len, dtype=torch.long, device=device)
    shapes = {"idx": {0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens", min=1, max=cfg.seq_len)}}
    program = torch.export.export(model, (example,), dynamic_shapes=shapes)
    info = {"config": asdict(cfg), "device": device.type}
    torch.export.save(program, path, extra_files={"nanochat.json": json.dumps(info)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        meta = prepare.load_meta()
        train_tokens = prepare.load_tokens("train")
    except prepare.PrepareError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    setup_start = time.perf_counter()

    # device and numerics
    if args.preset == "gpu" and not torch.cuda.is_available():
        print("no CUDA device: the gpu preset runs on the CPU in fp32", flush=True)
    device = torch.device("cuda" if args.preset == "gpu" and torch.cuda.is_available() else "cpu")
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        # attention backends in order of preference until main() returns (and drops this); compilation reads it
        # when it traces, and torch.compile's on-disk cache keeps the choice made then
        attention_order = sdpa_kernel(ATTENTION_PREFERENCE, set_priority=True)
        attention_order.__enter__()
    else:
        prepare.keep_freed_memory()
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores this process may use, not the machine's
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()
    torch.manual_seed(args.seed)

    # model
    heads = -(-args.depth * args.aspect_ratio // args.head_dim)
    cfg = GPTConfig(
        vocab_size=meta["vocab_size"], seq_len=args.seq_len, depth=args.depth, width=heads * args.head_dim,
        head_dim=args.head_dim, mlp_ratio=args.mlp_ratio, logit_softcap=args.logit_softcap,
        rope_base=args.rope_base, value_embed_every=args.value_embed_every, window_pattern=args.window_pattern,
        short_window=args.short_window,
    )
    model = GPT(cfg).to(device)
    trained = torch.compile(model) if args.compile else model
    optimizers = build_optimizers(model, args, on_cuda)
    params = sum(p.numel() for p in model.parameters())
    grad_accum = args.batch_tokens // (args.device_batch * args.seq_len)
    batches = TrainBatches(train_tokens, args.device_batch, args.seq_len, args.seed, device)
    threads = "" if on_cuda else f", {torch.get_num_threads()} threads"
    print(f"model: {cfg.depth} blocks, width {cfg.width}, {heads} heads, {params / 1e6:.2f}M params; "
          f"{args.batch_tokens} tokens/step ({args.device_batch} x {args.seq_len} x {grad_accum}); "
          f"{device.type}{' bf16' if on_cuda else ' fp32'}{threads}; budget {args.budget:g} s", flush=True)

    def train_step(progress: float, step: int) -> torch.Tensor:
        lr = lr_multiplier(progress, args) if progress >= 0 else 0.0
        ramp = min(step / max(args.muon_momentum_steps, 1), 1.0)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lr
        for group in optimizers[1].param_groups:
            group["momentum"] = 0.85 + ramp * (args.muon_momentum - 0.85)
        for _ in range(grad_accum):
            x, y = batches.next()
            with autocast:
                loss = trained(x, y)
            (loss / grad_accum).backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    # warm-up off the clock: learning rate 0 leaves the weights as they are; the optimizer state is reset after
    for _ in range(args.warmup_steps):
        train_step(-1.0, 0)
    for opt in optimizers:
        opt.state.clear()
    sync()
    warmup_s = time.perf_counter() - setup_start

    # training: the clock counts only these steps
    train_s, step, smooth_loss, step_s = 0.0, 0, 0.0, 0.0
    last_log_s, last_log_step = 0.0, 0
    while train_s + step_s < args.budget:  # stop before a step that would likely end past the budget
        started = time.perf_counter()
        loss = train_step(train_s / args.budget, step)
        sync()
        elapsed = time.perf_counter() - started
        train_s += elapsed
        step_s = elapsed if step == 0 else 0.8 * step_s + 0.2 * elapsed  # a typical step's duration
        step += 1
        if step % args.log_every == 0:
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                print(f"train.py: error: training diverged (loss {loss_value} at step {step})", file=sys.stderr)
                return 1
            smooth_loss = 0.7 * smooth_loss + 0.3 * loss_value if smooth_loss else loss_value
            tok_per_s = (step - last_log_step) * args.batch_tokens / max(train_s - last_log_s, 1e-9)
            last_log_s, last_log_step = train_s, step
            emit(step=step, train_loss=round(smooth_loss, 4), tok_per_s=round(tok_per_s))

    # evaluation by the protected evaluate.py, on the uncompiled model (it shares the trained weights)
    eval_start = time.perf_counter()
    val_bpb = evaluate.evaluate_bpb(model, args.seq_len, device, batch_size=args.device_batch) if args.evaluate \
        else None
    tokens = step * args.batch_tokens
    flops = model.flops_per_token() * tokens
    if on_cuda:
        peak_mem_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mem_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"trained {step} steps, {tokens:,} tokens in {train_s:.1f} s (+{warmup_s:.1f} s warm-up); "
          f"evaluated in {time.perf_counter() - eval_start:.1f} s", flush=True)
    if tokens > 2 * meta["train_tokens"]:  # many epochs: the run is limited by data, not by compute
        print(f"note: training went {tokens / meta['train_tokens']:.1f} times through the train split; prepare "
              f"more data for runs this long (python nanochat/prepare.py --download 8)", flush=True)
    final = {
        "final": True, "steps": step, "tokens": tokens, "params": params,
        "flops": float(f"{flops:.4g}"), "train_s": round(train_s, 2), "warmup_s": round(warmup_s, 2),
        "peak_mem_mb": round(peak_mem_mb, 1), "corpus": meta["corpus_sha256"][:12],
    }
    if val_bpb is not None:  # progress: the result is the protected evaluator's, measured in its own process
        final["val_bpb"] = round(val_bpb, 6)
    peak = peak_flops(device)
    if peak:
        final["mfu"] = round(flops / train_s / peak, 4)
    if args.save:
        save_for_evaluation(model, cfg, args.save)
    emit(**final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
