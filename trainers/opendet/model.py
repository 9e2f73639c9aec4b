"""Open-Det's trainable parts in one module: detector, BVLA-M aligner (and its query refiner), VLD-M prompt
distiller, name generator."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from trainers.modeling.query_detector import QueryDetector, QueryDetectorOutput
from trainers.opendet.alignment import AlignedQueryRefiner, BidirectionalAlignment
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
                         anchor_scale=config.anchor_scale, resize=config.resize, config_section="opendet.detector")


class OpenDetModel(nn.Module):
    """refiner: BVLA-M's refinement of the one-to-one layers' queries (None: they are scored as they are)."""

    def __init__(self, detector: QueryDetector, aligner: BidirectionalAlignment, distiller: PromptDistiller,
                 name_generator: ObjectNameGenerator, refiner: AlignedQueryRefiner | None = None):
        super().__init__()
        self.detector = detector
        self.aligner = aligner
        self.distiller = distiller
        self.name_generator = name_generator
        self.refiner = refiner

    @classmethod
    def from_config(cls, config: OpenDetConfig, text_dim: int, tokenizer: PreTrainedTokenizerBase | None
                    ) -> "OpenDetModel":
        """text_dim: Dt of the vision-language model's text embeddings (the store's CLIP)."""
        detector, loss = config.detector, config.loss
        dim, levels = detector.hidden_dim, len(detector.feature_maps)
        generator = ObjectNameGenerator.from_config(config.name_generator, text_dim, tokenizer,
                                                    lora_head=loss.lora_head, text_denoising=loss.text_denoising,
                                                    denoise_probability=loss.denoise_probability,
                                                    denoise_form=loss.denoise_form,
                                                    normalize_prompts=loss.normalize_prompts)
        refiner = (AlignedQueryRefiner(dim, detector.num_heads, detector.ffn_dim, levels, detector.sampling_points,
                                       detector.one_to_one_layers) if loss.refine_aligned_queries else None)
        return cls(query_detector_from_config(detector),
                   BidirectionalAlignment(dim, text_dim, bidirectional=loss.bidirectional_alignment),
                   PromptDistiller(dim, text_dim, detector.num_heads, detector.ffn_dim, levels,
                                   detector.sampling_points, form=loss.distiller_form), generator, refiner)

    def forward(self, images: list[Tensor]) -> QueryDetectorOutput:
        """images: B × (3, H, W) float in [0, 1] (what DistributedDataParallel calls)."""
        return self.detector(images)

    def prompts(self, output: QueryDetectorOutput, layer: int = -1, rows: Tensor | None = None) -> Tensor:
        """The VL-prompts z of a decoder layer (default: the last): (B, Q, Dt) float for every query, or with
        `rows` ((K,) int64 rows of the flattened valid queries, e.g. the matched ones) (K, Dt) for those alone.

        A query's prompt depends on nothing but itself, its box and the image's tokens (VLD-M has no attention
        between queries), so training computes the few matched queries' prompts instead of all of them."""
        chosen = output.layers[layer]
        tokens = (output.backbone_tokens, output.memory, output.token_pos, output.level_shapes)
        if rows is None:
            return self.distiller(chosen.queries, chosen.boxes, *tokens)
        images, positions = (~output.padding).nonzero(as_tuple=True)
        images, positions = images[rows], positions[rows]
        counts = torch.bincount(images, minlength=output.padding.shape[0])
        order = torch.argsort(images, stable=True)
        slots = torch.empty_like(images)
        slots[order] = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[images[order]]
        width = int(counts.max()) if len(rows) else 0
        queries = chosen.queries.new_zeros(len(counts), width, chosen.queries.shape[-1])
        boxes = chosen.boxes.new_full((len(counts), width, 4), 0.5)  # padding rows: any valid box, read by no one
        queries[images, slots] = chosen.queries[images, positions]
        boxes[images, slots] = chosen.boxes[images, positions]
        return self.distiller(queries, boxes, *tokens)[images, slots]

    def aligned_queries(self, output: QueryDetectorOutput, layer: int) -> Tensor:
        """The queries BVLA-M scores for decoder layer `layer` (≥ 0): refined for the one-to-one layers when the
        model has a refiner, as they are otherwise. (B, Q, d) float."""
        chosen = output.layers[layer]
        first_refined = len(output.layers) - (len(self.refiner.blocks) if self.refiner is not None else 0)
        if self.refiner is None or layer < first_refined:
            return chosen.queries
        return self.refiner(layer - first_refined, chosen.queries, chosen.boxes, output.memory, output.token_pos,
                            output.level_shapes)
