"""torchrun / DDP set-up: one process per device (or per CPU share), gloo on CPU, nccl on CUDA.

Each process of a node takes the GPU of its LOCAL_RANK (torchrun sets it), pins it with `torch.cuda.set_device` so
that NCCL and every `.cuda()` use it, and DDP gets that one device, as nanoGPT and torchvision's references do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """This process's rank on its node (torchrun's LOCAL_RANK); 0 for a plain run."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def global_rank() -> int:
    """This process's rank among all of the run (torchrun's RANK), known before the process group starts; 0 for a
    plain run."""
    return int(os.environ.get("RANK", "0"))


def global_world_size() -> int:
    """How many processes the run has (torchrun's WORLD_SIZE), known before the process group starts; 1 for a plain
    run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> ProcessGroup:
    """Join the process group torchrun describes in the environment; a plain run is a group of one."""
    if global_world_size() <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank())


def choose_device(requested: str, local_rank: int, cuda_available: bool, device_count: int) -> torch.device:
    """The device of the process with `local_rank` on its node: `cuda:local_rank` when CUDA is asked for (or `auto`
    finds it), else the CPU. A local rank without a visible GPU of its own is an error, not a second process on a
    GPU another rank already uses."""
    if requested == "cpu" or (requested == "auto" and not cuda_available):
        return torch.device("cpu")
    if not cuda_available:
        raise RuntimeError("device=cuda was asked for, but no CUDA device is visible (flag --set device=cpu)")
    if not 0 <= local_rank < device_count:
        raise RuntimeError(f"LOCAL_RANK={local_rank}, but this node shows {device_count} CUDA device(s): start at most "
                           f"{device_count} processes per node (torchrun --nproc_per_node), check "
                           "CUDA_VISIBLE_DEVICES, or train on the CPU (flag --set device=cpu)")
    return torch.device("cuda", local_rank)


def pick_device(requested: str) -> torch.device:
    """choose_device for this process (LOCAL_RANK from torchrun); a CUDA device becomes the current one."""
    device = choose_device(requested, local_rank(), torch.cuda.is_available(), torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def data_parallel(module: nn.Module, device: torch.device, group: ProcessGroup) -> nn.Module:
    """`module` itself for a group of one, else DDP on this process's one device (no device_ids on the CPU)."""
    if group.world_size <= 1:
        return module
    if device.type == "cuda":
        return DistributedDataParallel(module, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(module)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def count_over_ranks(count: float, device: torch.device) -> float:
    """A loss normaliser as the released DETR criteria take it (Open-Det2 qfreeDet.py SetCriterion.forward,
    `num_boxes`): this process's count summed over the processes and divided by their number, at least 1. A plain
    run's count as it is (at least 1); under DDP one all-reduce, so every rank must call it alike."""
    if dist.is_available() and dist.is_initialized():
        total = torch.tensor([float(count)], device=device)
        dist.all_reduce(total)
        count = total.item() / dist.get_world_size()
    return max(float(count), 1.0)
