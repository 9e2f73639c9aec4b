"""Checkpoint files read as data, never as code: safetensors, or a torch file of tensors and plain containers only
(`torch.load(weights_only=True)`). A torch file that asks to build other objects or call functions when unpickled
holds code; it is refused with our own message naming the file, the config key or flag that named it and what to
save instead, and never with torch's advice to load it with `weights_only=False`."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint that holds code (objects to build, functions to call), refused unread. A ValueError too, so the
    command lines that turn bad inputs into one message (trainers.train) report it as such."""


def load_tensor_file(path: str | Path, key: str) -> object:
    """What a torch file holds, loaded as data (tensors, dicts, lists, numbers, strings). `key` is the config key or
    flag that named the file. UnsafeCheckpointError when it holds code; ValueError when it is no torch file."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler names what it refused to build ("Unsupported global: GLOBAL <name>");
        # any other unpickling error ("Unsupported operand") is a file that is no checkpoint at all.
        named = refused_global(error)
        if named is None:
            found = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
            raise ValueError(f"{path} ({key}) is not a torch checkpoint this code can read: "
                             f"{found.group(1).strip() if found else _first_line(error)}") from None
        raise UnsafeCheckpointError(
            f"{path} ({key}) holds code: unpickling it would build objects or call functions beyond tensors and "
            f"plain containers (it names {named}), so it is refused unread. Save its tensors alone "
            "(torch.save(model.state_dict(), ...) or safetensors) and give that file instead") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path} ({key}) is not a torch checkpoint this code can read: {_first_line(error)}"
                         ) from error


def refused_global(error: Exception) -> str | None:
    """The object a weights-only unpickling error says the file asked for (`pathlib.PosixPath`, `os.system`), or
    None when the error is not such a refusal."""
    named = re.search(r"GLOBAL ([\w.]+)", str(error))
    return named.group(1) if named else None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
