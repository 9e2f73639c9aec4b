"""Checkpoints holding code are refused unread, with our own message (file, config key or flag, "holds code", what to
save instead), never torch's advice to load them with weights_only=False: ClipCap, the detector backbone and the
trainer's own checkpoints."""
import os
from pathlib import Path

import pytest
import torch

from trainers.checkpoint import load_checkpoint
from trainers.modeling.backbones import load_state_dict_file
from vlm.clipcap import read_state_dict
from vlm.tensor_files import UnsafeCheckpointError, load_tensor_file

RAN = Path(os.environ.get("TMPDIR", "/tmp")) / "ovd-distill-checkpoint-code-ran"


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint does."""

    def __reduce__(self):
        return (os.system, (f"touch {RAN}",))


@pytest.fixture()
def hostile(tmp_path) -> Path:
    path = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2, 2), "payload": _RunsCode()}, path)
    RAN.unlink(missing_ok=True)
    return path


@pytest.mark.parametrize("load, named", [
    (lambda path: read_state_dict(path), "config key captioner.clipcap.checkpoint"),
    (lambda path: load_state_dict_file(str(path), "model.backbone_weights"), "config key model.backbone_weights"),
    (lambda path: load_checkpoint(path), "flag --resume or --eval-only"),
])
def test_a_checkpoint_holding_code_is_refused_with_our_message(hostile, load, named):
    with pytest.raises(UnsafeCheckpointError) as error:
        load(hostile)
    message = str(error.value)
    assert str(hostile) in message and named in message and "holds code" in message
    assert "it names posix.system" in message or "it names os.system" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert isinstance(error.value, ValueError)  # the trainer's command line reports ValueErrors as one message
    assert not RAN.exists()  # and nothing ran


def test_plain_tensors_load_and_garbage_is_no_checkpoint(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    assert torch.equal(load_tensor_file(good, "k")["w"], torch.ones(3))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pt \\(k\\) is not a torch checkpoint") as error:
        load_tensor_file(junk, "k")
    assert not isinstance(error.value, UnsafeCheckpointError)
