"""A tiny Open-Det for tests: its config (a 32-d T5 of one layer from tests/trainers/opendet/tiny_t5, read as the
demo's configs/shapes/name_generator_t5 is), a model built from it, and a batch of two random images with unequal
object counts."""
from __future__ import annotations

from pathlib import Path

import torch

from trainers.opendet.config import NameGeneratorConfig, OpenDetConfig, OpenDetDetectorConfig
from trainers.opendet.model import OpenDetModel
from trainers.opendet.name_tokenizer import train_name_tokenizer

TINY_T5_DIR = str(Path(__file__).parent / "tiny_t5")
TEXT_DIM = 16
# The same tiny detector as `--set` overrides of a run's `opendet` section (tests/trainers/training_helpers.py).
TINY_OPENDET_SETTINGS = {"opendet.detector.image_size": 64, "opendet.detector.hidden_dim": 32,
                         "opendet.detector.ffn_dim": 64, "opendet.detector.encoder_layers": 1,
                         "opendet.detector.decoder_layers": 3, "opendet.detector.max_queries": 20,
                         "opendet.name_generator.t5_dir": TINY_T5_DIR}
TINY = OpenDetConfig(
    detector=OpenDetDetectorConfig(hidden_dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=3, max_queries=30),
    name_generator=NameGeneratorConfig(t5_dir=TINY_T5_DIR, lora_rank=4, lora_alpha=4),
)


def tiny_batch() -> tuple[list[torch.Tensor], list[dict]]:
    """Two images (the second letterboxed) with 2 and 1 named objects."""
    torch.manual_seed(0)
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 128)]
    texts = torch.nn.functional.normalize(torch.randn(3, TEXT_DIM), dim=-1)
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 20.0, 120.0, 90.0]]),
         "text_embeddings": texts[[0, 1]], "names": ["circle", "red star"]},
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 40.0]]), "text_embeddings": texts[[0]], "names": ["circle"]},
    ]
    return images, targets


def tiny_model(config: OpenDetConfig = TINY) -> OpenDetModel:
    torch.manual_seed(0)
    return OpenDetModel.from_config(config, TEXT_DIM, train_name_tokenizer(["circle", "red star", "a square"]))
