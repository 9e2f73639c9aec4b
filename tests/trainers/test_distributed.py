"""Which device each process takes: cuda:LOCAL_RANK under torchrun, the CPU when asked or when no GPU is visible,
and a clear error for a local rank without a GPU of its own (a pure function, tested on the CPU)."""
import pytest
import torch
from torch import nn

from trainers.distributed import ProcessGroup, choose_device, data_parallel


@pytest.mark.parametrize("requested", ["auto", "cuda"])
@pytest.mark.parametrize("local_rank", [0, 1, 3])
def test_each_rank_takes_the_gpu_of_its_local_rank(requested, local_rank):
    assert choose_device(requested, local_rank, cuda_available=True, device_count=4) == torch.device("cuda", local_rank)


def test_cpu_when_asked_or_when_auto_finds_no_gpu():
    assert choose_device("cpu", 5, cuda_available=True, device_count=8) == torch.device("cpu")
    assert choose_device("auto", 1, cuda_available=False, device_count=0) == torch.device("cpu")


def test_cuda_without_a_visible_gpu_names_the_flag():
    with pytest.raises(RuntimeError, match="device=cpu"):
        choose_device("cuda", 0, cuda_available=False, device_count=0)


def test_a_local_rank_beyond_the_visible_gpus_is_an_error():
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=2, but this node shows 2 CUDA device\(s\).*nproc_per_node"):
        choose_device("auto", 2, cuda_available=True, device_count=2)


def test_a_group_of_one_trains_the_module_itself():
    module = nn.Linear(2, 2)
    assert data_parallel(module, torch.device("cpu"), ProcessGroup()) is module
