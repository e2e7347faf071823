"""A GPT trained for a fixed time budget, judged by validation bits per byte.

One file, no framework: the model, the optimizers and the loop. Every knob is a module-level literal
constant below, so a sweep or an agent can change it by editing one line. The harness (data,
tokenizer, evaluation, the time budget) is in prepare.py and is not edited.

    python train.py                                  # one GPU, or CPU/MPS (SKYLAB_PROFILE=cpu sizes)
    torchrun --standalone --nproc_per_node=8 train.py
"""

import math
import os
import time
from contextlib import nullcontext

import schedules
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from prepare import (
    EVAL_TOKENS,
    MAX_SEQ_LEN,
    PROFILE,
    TIME_BUDGET,
    VOCAB_SIZE,
    TokenLoader,
    data_meta,
    evaluate_bpb,
)

# ----- model shape ---------------------------------------------------------------------------------
DEPTH = 8  # transformer blocks
ASPECT_RATIO = 64  # width = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"  # per layer, repeating: S = sliding window, L = full causal; the last layer is L
SHORT_WINDOW_FRAC = 0.5  # a sliding-window layer sees this fraction of MAX_SEQ_LEN
VALUE_EMBEDS = True  # value embeddings, mixed into attention values on alternating layers
LOGIT_SOFTCAP = 15.0
ROPE_BASE = 10000.0

# ----- optimisation --------------------------------------------------------------------------------
TOTAL_BATCH_SIZE = 2**19  # tokens per optimizer step; gradient accumulation makes up the difference
DEVICE_BATCH_SIZE = 128  # sequences per micro-batch on each device
MATRIX_LR = 0.04  # Muon: the transformer's weight matrices
EMBEDDING_LR = 0.6  # AdamW: token and value embeddings
UNEMBEDDING_LR = 0.004  # AdamW: lm_head
SCALAR_LR = 0.5  # AdamW: per-layer residual and x0 mixing scalars
WEIGHT_DECAY = 0.2  # Muon's decoupled weight decay (faded by schedules.weight_decay_multiplier)
ADAM_BETA1 = 0.8
ADAM_BETA2 = 0.95
MUON_NS_STEPS = 5  # polar-express orthogonalisation iterations
WARMUP_RATIO = 0.0
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0

# ----- runtime -------------------------------------------------------------------------------------
DEVICE = "auto"  # auto | cuda | mps | cpu
ATTENTION = "auto"  # auto | fa3 | flex | sdpa
COMPILE = True  # torch.compile, on CUDA only
UNTIMED_STEPS = 10  # the first steps (compilation, warm-up) do not count against the budget
SEED = 42
LOG_EVERY = 10


# ----- model ---------------------------------------------------------------------------------------


def rms_norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


_MASKS = {}


def attend(q, k, v, window, backend):
    """Causal attention of (B, T, H, D) tensors, limited to the last `window` keys."""
    T = q.size(1)
    if backend == "fa3":
        import flash_attn_interface

        size = (window - 1, 0) if window < T else (-1, -1)
        out = flash_attn_interface.flash_attn_func(q, k, v, causal=True, window_size=size)
        return out[0] if isinstance(out, tuple) else out
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        key = ("flex", T, window, q.device)
        if key not in _MASKS:

            def sliding_causal(b, h, q_idx, kv_idx):
                return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

            _MASKS[key] = create_block_mask(sliding_causal, None, None, T, T, device=q.device)
        out = flex_attention(q, k, v, block_mask=_MASKS[key])
    elif window >= T:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        key = ("sdpa", T, window, q.device)
        if key not in _MASKS:
            i = torch.arange(T, device=q.device)
            _MASKS[key] = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < window)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_MASKS[key])
    return out.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, n_head, head_dim, has_value_embed):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.c_q = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_k = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_v = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_proj = nn.Linear(n_head * head_dim, dim, bias=False)
        self.ve_gate = nn.Linear(32, n_head, bias=False) if has_value_embed else None

    def forward(self, x, value_embed, cos, sin, window, backend):
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if value_embed is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :32]))  # (B, T, H), 1.0 at init
            v = v + gate.unsqueeze(-1) * value_embed.view(B, T, self.n_head, self.head_dim)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        y = attend(q, k, v, window, backend)
        return self.c_proj(y.reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, 4 * dim, bias=False)
        self.c_proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim, n_head, head_dim, has_value_embed):
        super().__init__()
        self.attn = Attention(dim, n_head, head_dim, has_value_embed)
        self.mlp = MLP(dim)

    def forward(self, x, value_embed, cos, sin, window, backend):
        x = x + self.attn(rms_norm(x), value_embed, cos, sin, window, backend)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, depth, dim, head_dim, vocab_size, seq_len, backend):
        super().__init__()
        self.n_head = dim // head_dim
        self.backend = backend
        self.windows = [self._window(i, depth, seq_len) for i in range(depth)]
        self.ve_layers = [i for i in range(depth) if VALUE_EMBEDS and i % 2 == (depth - 1) % 2]
        self.wte = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(
            Block(dim, self.n_head, head_dim, i in self.ve_layers) for i in range(depth)
        )
        self.value_embeds = nn.ModuleDict(
            {str(i): nn.Embedding(vocab_size, self.n_head * head_dim) for i in self.ve_layers}
        )
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(depth))
        self.x0_lambdas = nn.Parameter(torch.full((depth,), 0.1))
        inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(seq_len).float(), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    @staticmethod
    def _window(layer, depth, seq_len):
        kind = "L" if layer == depth - 1 else WINDOW_PATTERN[layer % len(WINDOW_PATTERN)]
        return seq_len if kind == "L" else max(1, int(seq_len * SHORT_WINDOW_FRAC))

    @torch.no_grad()
    def init_weights(self):
        dim = self.wte.embedding_dim
        bound = 3**0.5 * dim**-0.5  # uniform with the std of N(0, 1/dim)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        for embed in self.value_embeds.values():
            nn.init.uniform_(embed.weight, -bound, bound)

    def forward(self, idx, targets=None, reduction="mean"):
        T = idx.size(1)
        dtype = torch.bfloat16 if idx.is_cuda else torch.float32
        cos, sin = self.cos[:, :T].to(dtype), self.sin[:, :T].to(dtype)
        x = rms_norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            value_embed = self.value_embeds[str(i)](idx) if i in self.ve_layers else None
            x = block(x, value_embed, cos, sin, min(self.windows[i], T), self.backend)
        logits = self.lm_head(rms_norm(x)).float()
        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len):
        """Training FLOPs per token: 6 per matrix weight, plus attention over each layer's window."""
        embeddings = self.wte.weight.numel() + sum(e.weight.numel() for e in self.value_embeds.values())
        matrices = self.num_params() - embeddings - self.resid_lambdas.numel() - self.x0_lambdas.numel()
        head_dim = self.blocks[0].attn.head_dim
        attention = sum(12 * self.n_head * head_dim * min(w, seq_len) for w in self.windows)
        return 6 * matrices + attention


# ----- optimizers ----------------------------------------------------------------------------------

# Polar Express (Amsel et al., 2025): per-iteration odd polynomials that drive every singular value
# of the normalised update towards 1 faster than a fixed Newton-Schulz quintic.
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def orthogonalize(G, steps=MUON_NS_STEPS):
    """An approximation of U V^T for G = U S V^T, batched over leading dimensions."""
    X = G.bfloat16() if G.is_cuda else G.float()
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    for a, b, c in POLAR_EXPRESS[:steps]:
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.mT if transposed else X


class Muon(torch.optim.Optimizer):
    """Momentum, then an orthogonalised update: every direction of a matrix moves at the same rate.
    Parameters of one shape are orthogonalised together as a batch."""

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0):
        params = list(params)
        shapes = sorted({tuple(p.shape) for p in params})
        groups = [{"params": [p for p in params if tuple(p.shape) == s]} for s in shapes]
        super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = torch.stack([p.grad for p in params])
            state = self.state[params[0]]
            if "momentum" not in state or state["momentum"].shape != grads.shape:
                state["momentum"] = torch.zeros_like(grads)
            buffer = state["momentum"]
            buffer.lerp_(grads, 1 - group["momentum"])
            update = orthogonalize(grads.lerp_(buffer, group["momentum"]))  # Nesterov
            rows, cols = params[0].shape[-2:]
            scale = max(1.0, rows / cols) ** 0.5
            for p, u in zip(params, update.unbind(0), strict=True):
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(u.to(p.dtype), alpha=-group["lr"] * scale)


def build_optimizers(model, device_type):
    dim = model.wte.embedding_dim
    width_scale = (dim / 768) ** -0.5  # AdamW rates were tuned at width 768
    matrices = [p for block in model.blocks for p in block.parameters() if p.ndim == 2]
    embeddings = [model.wte.weight, *(e.weight for e in model.value_embeds.values())]
    adam_groups = [
        dict(params=embeddings, lr=EMBEDDING_LR * width_scale),
        dict(params=[model.lm_head.weight], lr=UNEMBEDDING_LR * width_scale),
        dict(params=[model.resid_lambdas, model.x0_lambdas], lr=SCALAR_LR),
    ]
    adam = torch.optim.AdamW(
        adam_groups, betas=(ADAM_BETA1, ADAM_BETA2), eps=1e-10, weight_decay=0.0, fused=device_type == "cuda"
    )
    muon = Muon(matrices, lr=MATRIX_LR, weight_decay=WEIGHT_DECAY)
    for optimizer in (adam, muon):
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
    return adam, muon


# ----- runtime helpers -----------------------------------------------------------------------------

PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 125e12,
    "RTX 4090": 165e12,
}


def pick_device():
    if DEVICE != "auto":
        return torch.device(DEVICE)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_attention(device):
    if ATTENTION != "auto":
        return ATTENTION
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9:
        try:
            import flash_attn_interface  # noqa: F401  FlashAttention 3, Hopper only

            return "fa3"
        except ImportError:
            pass
    return "sdpa"


def peak_flops(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def main():
    started = time.time()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device()
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    torch.manual_seed(SEED)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    meta = data_meta()

    dim = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
    backend = pick_attention(device)
    model = GPT(DEPTH, dim, HEAD_DIM, VOCAB_SIZE, MAX_SEQ_LEN, backend).to(device)
    model.init_weights()
    optimizers = build_optimizers(model, device.type)
    compiled = torch.compile(model, dynamic=False) if COMPILE and device.type == "cuda" else model
    train_model = compiled
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(
            compiled, device_ids=[device] if device.type == "cuda" else None
        )

    tokens_per_micro = DEVICE_BATCH_SIZE * MAX_SEQ_LEN * world
    if TOTAL_BATCH_SIZE % tokens_per_micro:
        raise SystemExit(
            f"TOTAL_BATCH_SIZE={TOTAL_BATCH_SIZE} is not a multiple of DEVICE_BATCH_SIZE x MAX_SEQ_LEN x "
            f"devices = {tokens_per_micro}"
        )
    grad_accum = TOTAL_BATCH_SIZE // tokens_per_micro
    flops_per_step = model.flops_per_token(MAX_SEQ_LEN) * TOTAL_BATCH_SIZE
    peak = peak_flops(device)
    if master:
        print(
            f"profile {PROFILE} | data {meta['source']} | device {device} | attention {backend} | "
            f"params {model.num_params() / 1e6:.1f}M | width {dim} | depth {DEPTH} | "
            f"grad accumulation {grad_accum} | budget {TIME_BUDGET}s",
            flush=True,
        )

    loader = TokenLoader("train", DEVICE_BATCH_SIZE, MAX_SEQ_LEN, device, seed=SEED + rank)
    x, y = loader.next_batch()
    training_time, step, tokens_seen, smooth_loss = 0.0, 0, 0, None
    while True:
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_start = time.time()
        progress = min(training_time / TIME_BUDGET, 1.0)
        lr_scale = schedules.lr_multiplier(progress, WARMUP_RATIO, WARMDOWN_RATIO, FINAL_LR_FRAC)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_scale
        for group in optimizers[1].param_groups:
            group["momentum"] = schedules.muon_momentum(step)
            group["weight_decay"] = WEIGHT_DECAY * schedules.weight_decay_multiplier(progress)

        for micro in range(grad_accum):
            sync = nullcontext()
            if distributed and micro < grad_accum - 1:
                sync = train_model.no_sync()
            with sync, autocast:
                loss = train_model(x, y)
            (loss / grad_accum).backward()
            x, y = loader.next_batch()
        for optimizer in optimizers:
            optimizer.step()
        model.zero_grad(set_to_none=True)

        loss_value = loss.item()
        if not math.isfinite(loss_value) or loss_value > 100:
            raise SystemExit(f"training diverged at step {step}: loss {loss_value}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_seconds = time.time() - step_start
        step += 1
        tokens_seen += TOTAL_BATCH_SIZE
        if step > UNTIMED_STEPS:
            training_time += step_seconds
        if distributed:  # every rank follows rank 0's clock: same schedule, same last step
            clock = torch.tensor([training_time], dtype=torch.float64, device=device)
            dist.broadcast(clock, 0)
            training_time = float(clock.item())
        smooth_loss = loss_value if smooth_loss is None else 0.9 * smooth_loss + 0.1 * loss_value
        if master and (step % LOG_EVERY == 0 or step == 1):
            mfu = 100 * flops_per_step / step_seconds / (peak * world) if peak else 0.0
            print(
                f"step {step:05d} | loss {smooth_loss:.4f} | lr {lr_scale:.3f} | "
                f"tok/s {TOTAL_BATCH_SIZE / step_seconds:,.0f} | mfu {mfu:.1f}% | "
                f"train {training_time:.1f}s/{TIME_BUDGET}s",
                flush=True,
            )
        if step > UNTIMED_STEPS and training_time >= TIME_BUDGET:
            break

    model.eval()
    with autocast:
        val_bpb = evaluate_bpb(compiled, DEVICE_BATCH_SIZE, device)
    timed_steps = max(step - UNTIMED_STEPS, 1)
    mfu = 100 * flops_per_step * timed_steps / max(training_time, 1e-9) / (peak * world) if peak else 0.0
    peak_vram = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    if master:
        print("---")
        print(f"val_bpb:          {val_bpb:.6f}")
        print(f"training_seconds: {training_time:.1f}")
        print(f"total_seconds:    {time.time() - started:.1f}")
        print(f"peak_vram_mb:     {peak_vram:.1f}")
        print(f"mfu_percent:      {mfu:.2f}")
        print(f"total_tokens_M:   {tokens_seen / 1e6:.1f}")
        print(f"num_steps:        {step}")
        print(f"num_params_M:     {model.num_params() / 1e6:.1f}")
        print(f"depth:            {DEPTH}")
        print(f"eval_tokens_M:    {EVAL_TOKENS / 1e6:.2f}")
        print(f"data:             {meta['source']}")
        print(f"profile:          {PROFILE}")
        print(f"attention:        {backend}")
        print(f"device:           {device.type}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
