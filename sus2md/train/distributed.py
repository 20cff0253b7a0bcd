"""Data parallelism with ``torch.distributed``: ranks hold disjoint shards of the training batches
and sum losses, gradients and normal equations, so every rank takes the same optimiser step.

Started by ``torchrun --nproc_per_node=P -m sus2md train cfg.yaml`` (environment variables
``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/...) or by tests that spawn processes.  Backend: gloo on
CPU, nccl when the model runs on CUDA.  One process without those variables is world size 1 and
never touches ``torch.distributed``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Context", "setup", "teardown"]


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    owns_group: bool = False  # we initialised the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, t: Tensor) -> Tensor:
        """Sum over ranks (a new tensor; ``t`` is unchanged)."""
        if self.world == 1:
            return t
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def broadcast_object(self, obj):
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup(device: str = "cpu") -> Context:
    """A :class:`Context` for this process, initialising the process group when launched with
    ``WORLD_SIZE > 1`` (or reusing one the caller initialised)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return Context()
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return Context(dist.get_rank(), dist.get_world_size(), owns_group=True)


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
