"""A GPT trained for a fixed time budget, judged by validation bits per byte.

One file, no framework: the model, the optimizers and the loop. Every knob is a module-level literal
constant below, so a sweep or an agent can change it by editing one line. The harness (data,
tokenizer, evaluation, the time budget) is in prepare.py, the device and attention kernels in
runtime.py; neither is edited.

    python train.py                                  # one GPU, or CPU/MPS (SKYLAB_PROFILE=cpu sizes)
    torchrun --standalone --nproc_per_node=8 train.py
"""

import gc
import math
import statistics
import time
from contextlib import nullcontext

import runtime
import schedules
import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import (
    EVAL_TOKENS,
    MAX_SEQ_LEN,
    PROFILE,
    TIME_BUDGET,
    VOCAB_SIZE,
    PackedLoader,
    data_meta,
    evaluate_bpb,
)
from runtime import attend, batch_layout, sliding_window_mask

# ----- model shape ---------------------------------------------------------------------------------
DEPTH = 8  # transformer blocks
ASPECT_RATIO = 64  # width = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"  # per layer, repeating: S = sliding window, L = full causal; the last layer is L
SHORT_WINDOW_FRAC = 0.5  # a sliding-window layer sees this fraction of MAX_SEQ_LEN back (and itself)
VALUE_EMBEDS = True  # value embeddings, mixed into attention values on alternating layers
LOGIT_SOFTCAP = 15.0
ROPE_BASE = 10000.0

# ----- optimisation --------------------------------------------------------------------------------
TOTAL_BATCH_SIZE = 2**19  # tokens per optimizer step; gradient accumulation makes up the difference
DEVICE_BATCH_SIZE = 128  # sequences per micro-batch on each device
MATRIX_LR = 0.04  # Muon: the transformer's weight matrices
EMBEDDING_LR = 0.6  # AdamW: token and value embeddings
UNEMBEDDING_LR = 0.004  # AdamW: lm_head
SCALAR_LR = 0.5  # AdamW: the per-layer x0 mixing scalars
RESID_LR_FRAC = 0.01  # the per-layer residual scalars learn at this fraction of SCALAR_LR
WEIGHT_DECAY = 0.2  # Muon's cautious weight decay (faded by schedules.weight_decay_multiplier)
ADAM_BETA1 = 0.8
ADAM_BETA2 = 0.95
X0_ADAM_BETA1 = 0.96  # the x0 scalars average their gradients over longer
MUON_NS_STEPS = 5  # polar-express orthogonalisation iterations
MUON_BETA2 = 0.95  # NorMuon: decay of the per-row (or per-column) second moment of the update
WARMUP_RATIO = 0.0
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0

# ----- runtime -------------------------------------------------------------------------------------
DEVICE = "auto"  # auto | cuda | mps | cpu
ATTENTION = "auto"  # auto | fa3 | flex | sdpa
COMPILE = True  # torch.compile of the model and the optimizer steps, on CUDA only
UNTIMED_STEPS = 10  # the first steps (compilation, warm-up) do not count against the budget
SEED = 42  # measurement k of a trial runs with SKYLAB_SEED=k, added to this (see skylab's [decision])
LOG_EVERY = 10


# ----- model ---------------------------------------------------------------------------------------


def rms_norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):
    """Rotary position embedding, computed in x's dtype (so q and k keep the dtype of v)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, n_head, head_dim, has_value_embed):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.c_q = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_k = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_v = nn.Linear(dim, n_head * head_dim, bias=False)
        self.c_proj = nn.Linear(n_head * head_dim, dim, bias=False)
        self.ve_gate = nn.Linear(32, n_head, bias=False) if has_value_embed else None

    def forward(self, x, value_embed, cos, sin, window, backend, mask=None):
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if value_embed is not None:  # mixed in v's dtype: FA3 needs q, k and v in one dtype
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :32]))  # (B, T, H), 1.0 at init
            ve = value_embed.view(B, T, self.n_head, self.head_dim).to(v.dtype)
            v = v + gate.unsqueeze(-1).to(v.dtype) * ve
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        y = attend(q, k, v, window, backend, mask)
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

    def forward(self, x, value_embed, cos, sin, window, backend, mask=None):
        x = x + self.attn(rms_norm(x), value_embed, cos, sin, window, backend, mask)
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
        self.masks = {}  # sequence length -> per-layer attention masks (see attention_masks)

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

    def embeddings_to(self, dtype):
        """Token and value embeddings in `dtype` (bf16 on CUDA): the residual stream then starts,
        and stays, in that dtype, and the tables take half the memory."""
        self.wte.to(dtype)
        self.value_embeds.to(dtype)

    def attention_masks(self, T, device):
        """Make each sliding-window layer's mask for length T before compilation (None elsewhere)."""
        self.masks[T] = [
            sliding_window_mask(T, window, self.backend, device)
            if window < T and self.backend != "fa3"
            else None
            for window in self.windows
        ]

    def forward(self, idx, targets=None, reduction="mean"):
        T = idx.size(1)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        masks = self.masks.get(T)
        x = rms_norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            value_embed = self.value_embeds[str(i)](idx) if i in self.ve_layers else None
            mask = masks[i] if masks is not None else None
            x = block(x, value_embed, cos, sin, min(self.windows[i], T), self.backend, mask)
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


def muon_step(grads, params, momentum_buffer, second_moment, momentum, lr, weight_decay, beta2, ns_steps):
    """One NorMuon step for a stack of same-shape matrices (all tensors; the scalars 0-d, so a
    compiled step never recompiles as they change). In order:
    Nesterov momentum; orthogonalisation (every direction moves at the same rate); NorMuon: each row
    (for tall or square matrices) or column (for wide ones) divided by the root of its running mean
    square, then the whole update rescaled to its norm before that; cautious weight decay: only
    where the update and the parameter agree in sign, at the update's learning rate.
    `lr` already holds the shape scale. Updates `params` and both buffers in place."""
    momentum_buffer.lerp_(grads, 1 - momentum)
    update = orthogonalize(grads.lerp(momentum_buffer, momentum), ns_steps).float()
    reduce = -1 if grads.size(-2) >= grads.size(-1) else -2
    mean_square = update.square().mean(dim=reduce, keepdim=True)
    second_moment.lerp_(mean_square.to(second_moment.dtype), 1 - beta2)
    scale = second_moment.float().clamp_min(1e-10).rsqrt()
    norm_before = (mean_square.sum(dim=(-2, -1), keepdim=True) * update.size(reduce)).sqrt()
    norm_after = (
        (mean_square * scale.square()).sum(dim=(-2, -1), keepdim=True).mul(update.size(reduce)).sqrt()
    )
    update = update * (scale * norm_before / norm_after.clamp_min(1e-10))
    decay = (update * params >= 0).to(params.dtype) * params
    params.sub_(lr * update.to(params.dtype) + lr * weight_decay * decay)


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW step with bias correction; scalars are 0-d tensors (see muon_step). The moments are
    kept in the parameter's dtype."""
    param.mul_(1 - lr * weight_decay)
    grad = grad.to(exp_avg.dtype)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.lerp_(grad.square(), 1 - beta2)
    denom = (exp_avg_sq / (1 - beta2**step)).sqrt() + eps
    param.add_((exp_avg / denom * (-lr / (1 - beta1**step))).to(param.dtype))


class MuonAdamW(torch.optim.Optimizer):
    """NorMuon for the transformer's matrices (one group per shape, orthogonalised as a batch) and
    AdamW for everything else. Group kinds: "muon" or "adamw". With `compiled`, each step function is
    compiled once: its scalars travel as 0-d CPU tensors, filled before each call."""

    def __init__(self, groups, compiled=False):
        super().__init__(groups, defaults={})
        self.compiled = compiled
        compile_ = lambda f: torch.compile(f, dynamic=False, fullgraph=True) if compiled else f  # noqa: E731
        self._muon, self._adamw = compile_(muon_step), compile_(adamw_step)
        self._scalars = {}

    def _scalar(self, name, value):
        """A compiled step takes its changing scalars as 0-d CPU tensors; an eager one as floats."""
        if not self.compiled:
            return float(value)
        tensor = self._scalars.setdefault(name, torch.zeros((), dtype=torch.float32))
        tensor.fill_(value)
        return tensor

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params and group["kind"] == "muon":
                self._step_muon(group, params)
            elif params:
                self._step_adamw(group, params)

    def _step_muon(self, group, params):
        state = self.state[params[0]]
        rows, cols = params[0].shape
        if "momentum" not in state or state["momentum"].size(0) != len(params):
            state["momentum"] = torch.zeros(
                len(params), rows, cols, dtype=params[0].dtype, device=params[0].device
            )
            moment_shape = (len(params), rows, 1) if rows >= cols else (len(params), 1, cols)
            state["second_moment"] = torch.zeros(moment_shape, dtype=params[0].dtype, device=params[0].device)
        stacked = torch.stack(params)
        self._muon(
            torch.stack([p.grad for p in params]),
            stacked,
            state["momentum"],
            state["second_moment"],
            self._scalar("momentum", group["momentum"]),
            self._scalar("lr", group["lr"] * max(1.0, rows / cols) ** 0.5),
            self._scalar("weight_decay", group["weight_decay"]),
            self._scalar("beta2", group["beta2"]),
            group["ns_steps"],
        )
        torch._foreach_copy_(params, list(stacked.unbind(0)))

    def _step_adamw(self, group, params):
        beta1, beta2 = group["betas"]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            state["step"] += 1
            self._adamw(
                p,
                p.grad,
                state["exp_avg"],
                state["exp_avg_sq"],
                self._scalar("step", state["step"]),
                self._scalar("adam_lr", group["lr"]),
                self._scalar("beta1", beta1),
                self._scalar("adam_beta2", beta2),
                self._scalar("eps", group["eps"]),
                self._scalar("adam_weight_decay", group["weight_decay"]),
            )


def build_optimizer(model, compiled=False):
    dim = model.wte.embedding_dim
    width_scale = (dim / 768) ** -0.5  # AdamW rates were tuned at width 768
    matrices = [p for block in model.blocks for p in block.parameters() if p.ndim == 2]
    embeddings = [model.wte.weight, *(e.weight for e in model.value_embeds.values())]
    adam = dict(kind="adamw", betas=(ADAM_BETA1, ADAM_BETA2), eps=1e-10, weight_decay=0.0)
    groups = [
        dict(adam, params=embeddings, lr=EMBEDDING_LR * width_scale),
        dict(adam, params=[model.lm_head.weight], lr=UNEMBEDDING_LR * width_scale),
        dict(adam, params=[model.resid_lambdas], lr=SCALAR_LR * RESID_LR_FRAC),
        dict(adam, params=[model.x0_lambdas], lr=SCALAR_LR, betas=(X0_ADAM_BETA1, ADAM_BETA2)),
    ]
    for shape in sorted({tuple(p.shape) for p in matrices}):
        groups.append(
            dict(
                kind="muon",
                params=[p for p in matrices if tuple(p.shape) == shape],
                lr=MATRIX_LR,
                momentum=0.95,
                beta2=MUON_BETA2,
                ns_steps=MUON_NS_STEPS,
                weight_decay=WEIGHT_DECAY,
            )
        )
    optimizer = MuonAdamW(groups, compiled=compiled)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def main():
    started = time.time()
    rt = runtime.start(DEVICE, SEED)
    meta = data_meta()

    dim = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
    backend = runtime.pick_attention(rt.device, ATTENTION)
    model = GPT(DEPTH, dim, HEAD_DIM, VOCAB_SIZE, MAX_SEQ_LEN, backend).to(rt.device)
    model.init_weights()
    if rt.cuda:
        model.embeddings_to(torch.bfloat16)
    model.attention_masks(MAX_SEQ_LEN, rt.device)
    compile_ = COMPILE and rt.cuda
    optimizer = build_optimizer(model, compiled=compile_)
    compiled = torch.compile(model, dynamic=False) if compile_ else model
    train_model = compiled
    if rt.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            compiled, device_ids=[rt.device] if rt.cuda else None
        )

    batch_size, grad_accum, tokens_per_step = batch_layout(
        rt.world, TOTAL_BATCH_SIZE, DEVICE_BATCH_SIZE, MAX_SEQ_LEN
    )
    if rt.master and tokens_per_step != TOTAL_BATCH_SIZE:
        print(
            f"{rt.world} devices: {tokens_per_step:,} tokens per step (TOTAL_BATCH_SIZE {TOTAL_BATCH_SIZE:,})"
        )
    flops_per_step = model.flops_per_token(MAX_SEQ_LEN) * tokens_per_step
    peak = runtime.peak_flops(rt.device)
    if rt.master:
        print(
            f"profile {PROFILE} | data {meta['source']} | device {rt.device} | attention {backend} | "
            f"params {model.num_params() / 1e6:.1f}M | width {dim} | depth {DEPTH} | "
            f"batch {batch_size}x{MAX_SEQ_LEN}x{rt.world} | grad accumulation {grad_accum} | "
            f"budget {TIME_BUDGET:g}s",
            flush=True,
        )

    loader = PackedLoader("train", batch_size, MAX_SEQ_LEN, rt.device, rank=rt.rank, world=rt.world)
    x, y = loader.next_batch()
    training_time, step, tokens_seen, smooth_loss = 0.0, 0, 0, None
    step_times = []  # seconds of each timed step
    while True:
        rt.synchronize()
        step_start = time.time()
        progress = min(training_time / TIME_BUDGET, 1.0)
        lr_scale = schedules.lr_multiplier(progress, WARMUP_RATIO, WARMDOWN_RATIO, FINAL_LR_FRAC)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_scale
            if group["kind"] == "muon":
                group["momentum"] = schedules.muon_momentum(step)
                group["weight_decay"] = WEIGHT_DECAY * schedules.weight_decay_multiplier(progress)

        for micro in range(grad_accum):
            sync = nullcontext()
            if rt.distributed and micro < grad_accum - 1:
                sync = train_model.no_sync()
            with sync, rt.autocast():
                loss = train_model(x, y)
            (loss / grad_accum).backward()
            x, y = loader.next_batch()
        optimizer.step()
        model.zero_grad(set_to_none=True)

        loss_value = loss.item()
        if not math.isfinite(loss_value) or loss_value > 100:  # printed first: Skylab records `diverged`
            trained = f"train {training_time:.1f}s/{TIME_BUDGET:g}s"
            print(f"step {step + 1:05d} | loss {loss_value:.4f} | {trained}", flush=True)
            raise SystemExit(f"training diverged at step {step}: loss {loss_value}")
        rt.synchronize()
        step_seconds = time.time() - step_start
        step += 1
        tokens_seen += tokens_per_step
        if step > UNTIMED_STEPS:
            training_time += step_seconds
            step_times.append(step_seconds)
        if step == 1:  # everything allocated so far lives to the end: a collection would only stall
            gc.collect()
            gc.freeze()
            gc.disable()
        elif step % 5000 == 0:
            gc.collect()
        training_time = rt.broadcast_clock(training_time)  # every rank: same schedule, same last step
        smooth_loss = loss_value if smooth_loss is None else 0.9 * smooth_loss + 0.1 * loss_value
        if rt.master and (step % LOG_EVERY == 0 or step == 1):
            mfu = 100 * flops_per_step / step_seconds / (peak * rt.world) if peak else 0.0
            print(
                f"step {step:05d} | loss {smooth_loss:.4f} | lr {lr_scale:.3f} | "
                f"tok/s {tokens_per_step / step_seconds:,.0f} | mfu {mfu:.1f}% | epoch {loader.epoch} | "
                f"train {training_time:.1f}s/{TIME_BUDGET:g}s",
                flush=True,
            )
        if step > UNTIMED_STEPS and training_time >= TIME_BUDGET:
            break

    model.eval()
    with rt.autocast():
        bpb = evaluate_bpb(compiled, batch_size, rt.device)
    timed_steps = max(step - UNTIMED_STEPS, 1)
    mfu = 100 * flops_per_step * timed_steps / max(training_time, 1e-9) / (peak * rt.world) if peak else 0.0
    median_step = statistics.median(step_times) if step_times else float("nan")
    peak_vram = rt.peak_vram_mb()
    if rt.master:
        print("---")
        print(f"val_bpb:          {bpb.val_bpb:.6f}")
        print(f"val_bpb_raw:      {bpb.raw_bytes_bpb:.6f}")
        print(f"training_seconds: {training_time:.1f}")
        print(f"total_seconds:    {time.time() - started:.1f}")
        print(f"peak_vram_mb:     {peak_vram:.1f}")
        print(f"mfu_percent:      {mfu:.2f}")
        print(f"total_tokens_M:   {tokens_seen / 1e6:.1f}")
        print(f"tok_per_sec:      {tokens_per_step / median_step:.0f}")
        print(f"epochs:           {loader.epoch - 1}")
        print(f"num_steps:        {step}")
        print(f"num_params_M:     {model.num_params() / 1e6:.1f}")
        print(f"depth:            {DEPTH}")
        print(f"eval_tokens_M:    {EVAL_TOKENS / 1e6:.2f}")
        print(f"data:             {meta['source']}")
        print(f"profile:          {PROFILE}")
        print(f"attention:        {backend}")
        print(f"device:           {rt.device.type}")
        if rt.gpu_name():
            print(f"gpu:              {rt.gpu_name()}")
    rt.finish()


if __name__ == "__main__":
    main()
