"""The runtime under train.py: the device and the processes, the attention kernels and their masks,
the batch layout over devices and the GPU's peak FLOPs. Frozen, like prepare.py: a search edits the
model, the optimizer and the loop in train.py, never the code that makes each backend work, so an
edit cannot break a backend no trial exercises.

train.py picks with its DEVICE and ATTENTION constants; `start` sets up the device (and
torchrun's process group) and returns a `Runtime` the loop asks for what differs by device.
"""

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F


@dataclass
class Runtime:
    """One process's device: `rank` of `world` (torchrun), `master` prints and reports."""

    device: torch.device
    rank: int
    world: int
    distributed: bool

    @property
    def master(self):
        return self.rank == 0

    @property
    def cuda(self):
        return self.device.type == "cuda"

    def autocast(self):
        """bfloat16 autocast on CUDA; nothing elsewhere."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    def synchronize(self):
        """Wait for the GPU (before and after a timed step)."""
        if self.cuda:
            torch.cuda.synchronize()

    def peak_vram_mb(self):
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else 0.0

    def gpu_name(self):
        return torch.cuda.get_device_name(self.device) if self.cuda else None

    def broadcast_clock(self, seconds):
        """Rank 0's training time on every rank, so all follow one schedule to one last step."""
        if not self.distributed:
            return seconds
        clock = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.broadcast(clock, 0)
        return float(clock.item())

    def finish(self):
        if self.distributed:
            dist.destroy_process_group()


def start(device_choice, seed):
    """The device (`device_choice`: auto, cuda, mps or cpu), torchrun's process group when there is
    one, TF32 matmuls on CUDA, and the seed (plus SKYLAB_SEED, the measurement's number)."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    device = pick_device(device_choice)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(seed + int(os.environ.get("SKYLAB_SEED", "0")))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, rank, world, distributed)


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


def pick_device(choice="auto"):
    """`choice` (cuda, mps, cpu), or with auto the best there is."""
    if choice != "auto":
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_attention(device, choice="auto"):
    """`choice` (fa3, flex, sdpa), or with auto: FA3 on a Hopper GPU that has it; FlexAttention
    (block-sparse windows, compiled) on any other CUDA GPU; SDPA on CPU and MPS."""
    if choice != "auto":
        return choice
    if device.type != "cuda":
        return "sdpa"
    if torch.cuda.get_device_capability(device)[0] == 9:
        try:
            import flash_attn_interface  # noqa: F401  FlashAttention 3, Hopper only

            return "fa3"
        except ImportError:
            pass
    return "flex"


def batch_layout(world, total, per_device, seq_len):
    """(sequences per micro-batch on each device, micro-batches per step, tokens per step) for
    `world` devices, `total` tokens a step and `per_device` sequences of `seq_len` a micro-batch.
    The per-device batch shrinks when `per_device` on every device would overshoot `total`
    (8 x 128 x 2048 > 2^19); when the device count does not divide `total` (3, 5, 6 or 7 GPUs), a
    step takes the nearest whole number of micro-batches."""
    per_device = max(1, min(per_device, total // (seq_len * world)))
    accumulation = max(1, round(total / (per_device * seq_len * world)))
    return per_device, accumulation, per_device * seq_len * world * accumulation


def peak_flops(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


# ----- attention -----------------------------------------------------------------------------------

_MASKS = {}


def sliding_window_mask(T, window, backend, device):
    """What `attend` needs to limit each query to itself and the `window` keys before it, made once
    per shape outside any compiled region: a block-sparse mask for FlexAttention (blocks wholly
    outside the window are skipped, so a half-length window costs about half the work), a dense
    boolean one for SDPA."""
    key = (backend, T, window, str(device))
    if key not in _MASKS:
        if backend == "flex":
            from torch.nn.attention.flex_attention import create_block_mask

            def sliding_causal(b, h, q_idx, kv_idx):
                return (q_idx >= kv_idx) & (q_idx - kv_idx <= window)

            _MASKS[key] = create_block_mask(sliding_causal, None, None, T, T, device=device)
        else:
            i = torch.arange(T, device=device)
            _MASKS[key] = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] <= window)
    return _MASKS[key]


def attend(q, k, v, window, backend, mask=None):
    """Causal attention of (B, T, H, D) tensors, each query limited to itself and the `window` keys
    before it (FA3's window_size=(window, 0), as the reference has it). q, k and v share
    one dtype. Full-length layers use SDPA's causal kernel on every backend but FA3."""
    T = q.size(1)
    if backend == "fa3":
        import flash_attn_interface

        size = (window, 0) if window < T else (-1, -1)
        out = flash_attn_interface.flash_attn_func(q, k, v, causal=True, window_size=size)
        return out[0] if isinstance(out, tuple) else out
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if window >= T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
    if mask is None:
        mask = sliding_window_mask(T, window, backend, q.device)
    if backend == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        out = flex_attention(q, k, v, block_mask=mask)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)
