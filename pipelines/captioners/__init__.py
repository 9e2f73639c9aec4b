"""Region captioners behind one interface (`base.Captioner`), chosen by name from `CAPTIONERS`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipelines.captioners.base import (CAPTIONERS, CaptionFailure, CaptionResult, Captioner, ImageRegions,
                                       register_captioner)
from pipelines.captioners.blip2 import Blip2CaptionerConfig
from pipelines.captioners.clipcap import ClipCapCaptionerConfig
from pipelines.captioners.given import GivenConfig

__all__ = ["CAPTIONERS", "CaptionFailure", "CaptionResult", "Captioner", "CaptionerConfig", "ImageRegions",
           "build_captioner", "register_captioner"]


@dataclass(frozen=True)
class CaptionerConfig:
    name: Literal["clipcap", "blip2", "given"] = "clipcap"
    clipcap: ClipCapCaptionerConfig = field(default_factory=ClipCapCaptionerConfig)
    blip2: Blip2CaptionerConfig = field(default_factory=Blip2CaptionerConfig)
    given: GivenConfig = field(default_factory=GivenConfig)


def build_captioner(config: CaptionerConfig) -> Captioner:
    """The captioner named by `config.name`, built from its own section; errors name the config key."""
    if config.name not in CAPTIONERS:
        raise ValueError(f"unknown captioner {config.name!r} (config key captioner.name); "
                         f"known: {sorted(CAPTIONERS)}")
    return CAPTIONERS[config.name](getattr(config, config.name))
