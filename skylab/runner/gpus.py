"""GPU ids as CUDA_VISIBLE_DEVICES takes them: checked once, for --gpus and remote.toml alike.

Below workers and remote_config in the import graph, so neither imports the other for it.
"""

from __future__ import annotations

from skylab.errors import SkylabError


def is_gpu_id(text: str) -> bool:
    """What CUDA_VISIBLE_DEVICES accepts: an index, or a GPU or MIG UUID."""
    return text.isdigit() or text.startswith(("GPU-", "MIG-"))


def parse_gpus(text: str) -> list[str]:
    """`0,1,2,3` (or GPU UUIDs) as a list; a clear error for anything else."""
    gpus = [part.strip() for part in text.split(",")]
    if not gpus or not all(is_gpu_id(g) for g in gpus):
        raise SkylabError(f"--gpus: expected GPU ids like 0,1,2,3, not {text!r}")
    if len(set(gpus)) != len(gpus):
        raise SkylabError(f"--gpus: {text!r} names a GPU twice")
    return gpus
