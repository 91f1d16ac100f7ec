"""Where a run executes: one process or several under `torchrun`, and on which device.

`torchrun --nproc_per_node=N -m goingdeeper train ...` starts N processes; `setup_distributed`
reads RANK / WORLD_SIZE / LOCAL_RANK from the environment and joins the group (NCCL on GPUs,
gloo on CPUs). The same command without torchrun is one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Distributed(rank, world, local)


def check_device(name: str) -> None:
    """A `ConfigError` unless `name` is auto, cpu or a GPU this machine has (cuda, cuda:N)."""
    try:
        device = torch.device(name if name != "auto" else "cpu")
    except RuntimeError:
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):  # meta holds no numbers; mps is not supported here
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this machine has no CUDA GPU; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} GPUs here")


def pick_device(name: str, d: Distributed) -> torch.device:
    """The device `name` (auto, cpu, cuda, cuda:N) stands for in this process."""
    check_device(name)
    if name == "auto":
        return (
            torch.device(f"cuda:{d.local_rank}")
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if name == "cuda" and d.world > 1:
        return torch.device(f"cuda:{d.local_rank}")
    return torch.device(name)
