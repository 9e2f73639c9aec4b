"""Open-Det's trainable parts in one module: detector, BVLA-M aligner, VLD-M prompt distiller, name generator."""
from __future__ import annotations

from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from trainers.opendet.alignment import BidirectionalAlignment
from trainers.modeling.query_detector import QueryDetector, QueryDetectorOutput
from trainers.opendet.name_generator import ObjectNameGenerator
from trainers.opendet.config import OpenDetConfig
from trainers.opendet.prompt_distiller import PromptDistiller


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
        return cls(QueryDetector(config.detector),
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
