"""Open-Det's trainable parts in one module: detector, BVLA-M aligner, VLD-M prompt distiller, name generator."""
from __future__ import annotations

from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from trainers.modeling.query_detector import QueryDetector, QueryDetectorOutput
from trainers.opendet.alignment import BidirectionalAlignment
from trainers.opendet.config import OpenDetConfig, QueryDetectorConfig
from trainers.opendet.name_generator import ObjectNameGenerator
from trainers.opendet.prompt_distiller import PromptDistiller


def query_detector_from_config(config: QueryDetectorConfig) -> QueryDetector:
    """The shared DETR-like detector with the sizes of `opendet.detector`."""
    return QueryDetector(backbone=config.backbone, backbone_weights=config.backbone_weights,
                         trainable_backbone_layers=config.trainable_backbone_layers, feature_maps=config.feature_maps,
                         image_size=config.image_size, hidden_dim=config.hidden_dim, num_heads=config.num_heads,
                         ffn_dim=config.ffn_dim, encoder_layers=config.encoder_layers,
                         decoder_layers=config.decoder_layers, one_to_one_layers=config.one_to_one_layers,
                         selection_threshold=config.selection_threshold, min_queries=config.min_queries,
                         max_queries=config.max_queries, sampling_points=config.sampling_points,
                         anchor_scale=config.anchor_scale, config_section="opendet.detector")


class OpenDetModel(nn.Module):
    def __init__(self, detector: QueryDetector, aligner: BidirectionalAlignment, distiller: PromptDistiller,
                 name_generator: ObjectNameGenerator):
        super().__init__()
        self.detector = detector
        self.aligner = aligner
        self.distiller = distiller
        self.name_generator = name_generator

    @classmethod
    def from_config(cls, config: OpenDetConfig, text_dim: int, tokenizer: PreTrainedTokenizerBase | None
                    ) -> "OpenDetModel":
        """text_dim: Dt of the vision-language model's text embeddings (the store's CLIP)."""
        dim = config.detector.hidden_dim
        generator = ObjectNameGenerator.from_config(config.name_generator, text_dim, tokenizer,
                                                    lora_head=config.loss.lora_head,
                                                    text_denoising=config.loss.text_denoising,
                                                    denoise_probability=config.loss.denoise_probability)
        return cls(query_detector_from_config(config.detector),
                   BidirectionalAlignment(dim, text_dim, bidirectional=config.loss.bidirectional_alignment),
                   PromptDistiller(dim, text_dim, config.detector.num_heads, config.detector.ffn_dim,
                                   len(config.detector.feature_maps), config.detector.sampling_points), generator)

    def forward(self, images: list[Tensor]) -> QueryDetectorOutput:
        """images: B × (3, H, W) float in [0, 1] (what DistributedDataParallel calls)."""
        return self.detector(images)

    def prompts(self, output: QueryDetectorOutput) -> Tensor:
        """The last decoder layer's VL-prompts z: (B, Q, Dt) float."""
        final = output.layers[-1]
        return self.distiller(final.queries, final.boxes, output.backbone_tokens, output.memory, output.token_pos,
                              output.level_shapes)
