"""Open-Det's trainable parts in one module: detector, BVLA-M aligners (the decoder's, with its query refiner, and
the encoder proposals'), VLD-M prompt distiller, name generator."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from trainers.modeling.query_detector import QueryDetector, QueryDetectorOutput
from trainers.opendet.alignment import AlignedQueryRefiner, BidirectionalAlignment
from trainers.opendet.config import OpenDetConfig
from trainers.opendet.name_generator import ObjectNameGenerator
from trainers.opendet.prompt_distiller import PromptDistiller


class OpenDetModel(nn.Module):
    """refiner: BVLA-M's refinement of the one-to-one layers' queries (None: they are scored as they are).
    proposal_aligner: BVLA-M for the encoder's proposals (released qfreeDet.py: `transformer.enc_vl_alignment`, the
    `interm_outputs` alignment trained by MAL and the Joint Loss)."""

    def __init__(self, detector: QueryDetector, aligner: BidirectionalAlignment, distiller: PromptDistiller,
                 name_generator: ObjectNameGenerator, refiner: AlignedQueryRefiner | None = None,
                 proposal_aligner: BidirectionalAlignment | None = None):
        super().__init__()
        self.detector = detector
        self.aligner = aligner
        self.distiller = distiller
        self.name_generator = name_generator
        self.refiner = refiner
        self.proposal_aligner = proposal_aligner

    @classmethod
    def from_config(cls, config: OpenDetConfig, text_dim: int, word_tokenizer: PreTrainedTokenizerBase | None
                    ) -> "OpenDetModel":
        """text_dim: Dt of the vision-language model's text embeddings (the store's CLIP); word_tokenizer: for a T5
        folder without tokenizer files (trainers.opendet.name_generator.load_t5)."""
        detector = config.detector
        dim, levels = detector.hidden_dim, len(detector.feature_maps)
        refiner = (AlignedQueryRefiner(dim, detector.num_heads, detector.ffn_dim, levels, detector.sampling_points,
                                       detector.one_to_one_layers) if config.alignment.refine_queries else None)
        bidirectional = config.alignment.bidirectional
        return cls(QueryDetector(detector), BidirectionalAlignment(dim, text_dim, bidirectional=bidirectional),
                   PromptDistiller(dim, text_dim, detector.num_heads, detector.ffn_dim, levels,
                                   detector.sampling_points, form=config.distiller.form),
                   ObjectNameGenerator.from_config(config.name_generator, text_dim, word_tokenizer), refiner,
                   BidirectionalAlignment(dim, text_dim, bidirectional=bidirectional))

    def forward(self, images: list[Tensor]) -> QueryDetectorOutput:
        """images: B × (3, H, W) float in [0, 1] (what DistributedDataParallel calls)."""
        return self.detector(images)

    def prompt_versions(self, output: QueryDetectorOutput, layer: int = -1, rows: Tensor | None = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """VLD-M's three versions of a decoder layer's queries (default: the last): (B, Q, d) each for every query,
        or with `rows` ((K,) int64 rows of the flattened valid queries, e.g. the matched ones) (K, d) each for those
        alone; `self.distiller.fuse_versions` makes them VL-prompts.

        A query's prompt depends on nothing but itself, its box and the image's tokens (VLD-M has no attention
        between queries), so training refines the few matched queries instead of all of them."""
        chosen = output.layers[layer]
        tokens = (output.backbone_tokens, output.memory, output.token_pos)
        if rows is None:
            return self.distiller.refine(chosen.queries, chosen.boxes, *tokens, output.layout(chosen.boxes.detach()))
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
        versions = self.distiller.refine(queries, boxes, *tokens, output.layout(boxes.detach()))
        return tuple(version[images, slots] for version in versions)

    def prompts(self, output: QueryDetectorOutput, layer: int = -1, rows: Tensor | None = None,
                for_names: bool = False) -> Tensor:
        """The VL-prompts z of a decoder layer: (B, Q, Dt), or (K, Dt) for `rows` (prompt_versions); `for_names`:
        as T5 reads them (the released form's fusion dropout while training)."""
        return self.distiller.fuse_versions(self.prompt_versions(output, layer, rows), for_names)

    def aligned_queries(self, output: QueryDetectorOutput, layer: int) -> Tensor:
        """The queries BVLA-M scores for decoder layer `layer` (≥ 0): refined for the one-to-one layers when the
        model has a refiner, as they are otherwise. (B, Q, d) float."""
        chosen = output.layers[layer]
        first_refined = len(output.layers) - (len(self.refiner.blocks) if self.refiner is not None else 0)
        if self.refiner is None or layer < first_refined:
            return chosen.queries
        return self.refiner(layer - first_refined, chosen.queries, output.memory, output.token_pos,
                            output.layout(chosen.boxes.detach()))
