"""Training methods by name (the contract is trainers.training_method.TrainingMethod), and a run's config loaded
as its method's run config: the engine's keys plus that method's section only."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from schemas.config import ConfigError, build_config, merged_config_data
from trainers.config import TrainConfig
from trainers.hdovd.method import HDOVD
from trainers.opendet.method import OPENDET
from trainers.proposer.method import PROPOSER
from trainers.training_method import TrainingMethod

METHODS: dict[str, TrainingMethod] = {method.name: method for method in (HDOVD, OPENDET, PROPOSER)}
DEFAULT_METHOD = TrainConfig.method


def training_method(name: str) -> TrainingMethod:
    if name not in METHODS:
        raise ConfigError(f"config key 'method': {name!r} is unknown; choose one of {sorted(METHODS)}")
    return METHODS[name]


def load_run_config(paths: str | Path | Sequence[str | Path] | None = None,
                    overrides: Iterable[str] = ()) -> TrainConfig:
    """The run config of the method the layers name (`method:`, default hdovd): config files (each after its
    `_base_` files) merged left to right, then `key=value` overrides, over that method's defaults. Another
    method's section is an error: a run carries only its own."""
    data, origins = merged_config_data(paths, overrides)
    method = training_method(data.get("method", DEFAULT_METHOD))
    for other in sorted(set(METHODS) - {method.name}):
        if other in data:
            where = origins.get(other) or next((origin for key, origin in origins.items()
                                                if key.startswith(other + ".")), "?")
            raise ConfigError(f"config key {other!r} is the section of method {other}, but this run's method is "
                              f"{method.name} (set in {where}): set method={other}, or leave the {other} keys out")
    return build_config(method.run_config, data, origins)
