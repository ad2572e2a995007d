"""The training device, and torch.distributed for data-parallel runs launched by ``torchrun``.

``Distributed.from_env(device)`` reads the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT); without them, or with one process, it is a no-op context and the same code
runs as a plain single process. gloo on CPU, nccl on CUDA. Only tensors and JSON bytes cross the
wire: no pickled objects.
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from watchnext.config import ConfigError


def resolve_device(setting: str, local_rank: int = 0) -> torch.device:
    """``train.device``: ``"auto"`` is CUDA when a GPU is visible, else the CPU; ``"cuda"`` without
    a GPU is refused rather than silently trained on the CPU. Process ``local_rank`` of a
    machine gets GPU ``local_rank``."""
    cuda = torch.cuda.is_available()
    if setting == "cuda" and not cuda:
        raise ConfigError("train.device: 'cuda', but torch sees no CUDA device "
                          "(use 'auto' or 'cpu')")
    if setting == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device(f"cuda:{local_rank}")


@dataclass
class Distributed:
    """This process's place in the run; ``owns_group`` when we created the process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: str = "auto", timeout_minutes: float = 30.0,
                 group_alone: bool = False) -> Distributed:
        """Join the process group torchrun described, or run alone when there is none;
        ``device`` is ``train.device``. ``group_alone``: a process running alone still gets a
        process group of one (TorchRec's sharded tables need one), left again by ``close``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        place = resolve_device(device, local_rank)
        cuda = place.type == "cuda"
        if cuda:
            torch.cuda.set_device(place)
        if world <= 1:
            owns = group_alone and not dist.is_initialized()
            if owns:
                dist.init_process_group("nccl" if cuda else "gloo", store=dist.HashStore(),
                                        rank=0, world_size=1)
            return cls(device=place, owns_group=owns)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if cuda else "gloo",
                                    timeout=datetime.timedelta(minutes=timeout_minutes))
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, place, owns)

    def close(self) -> None:
        """Leave the group; the barrier first, so no process tears down its side of the
        connections while another is still finishing its last collective."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes, in place (returned for chaining); identity when alone."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every process's ``data``, in rank order (uint8 tensors padded to the longest)."""
        if not self.active:
            return [data]
        length = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        lengths = [torch.zeros_like(length) for _ in range(self.world)]
        dist.all_gather(lengths, length)
        longest = int(max(n.item() for n in lengths))
        payload = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        if data:
            payload[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        chunks = [torch.zeros_like(payload) for _ in range(self.world)]
        dist.all_gather(chunks, payload)
        return [bytes(c[:int(n.item())].cpu().numpy()) for c, n in zip(chunks, lengths, strict=True)]

    def agree(self, value: int, what: str) -> None:
        """Fail on every process if they disagree on ``value`` (e.g. the checkpoint to resume)."""
        if not self.active:
            return
        t = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != -int(t[1]):
            raise RuntimeError(f"processes disagree on {what}: rank {self.rank} has {value}, "
                               f"others between {-int(t[1])} and {int(t[0])}")

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel when there are several processes, the model itself otherwise.

        Gradients are averaged by DDP's all-reduce; sparse embedding gradients (``--sparse``)
        travel as sparse tensors (supported by gloo). Buffers are constants, never re-synced.
        """
        if not self.active:
            return model
        kwargs = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        params = inspect.signature(DistributedDataParallel).parameters
        kwargs["forward_sync_buffers" if "forward_sync_buffers" in params
               else "broadcast_buffers"] = False
        return DistributedDataParallel(model, **kwargs)
