"""The config of an Open-Det run: the engine's keys (trainers.config) plus the `opendet` section (detector, losses,
name generator, inference).

Choices are `Literal` types (the loader refuses anything else); ranges are checked in `__post_init__`, and messages
name the dotted key from the run config's root (`opendet.loss.joint_alpha`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainers.config import StoreTrainConfig


@dataclass(frozen=True)
class QueryDetectorConfig:
    """The DETR-like detector (Open-Det Sec. 3.2), mapped onto trainers.modeling.query_detector.QueryDetector.
    Defaults are the CPU demo detector; the paper's detector has 6 decoder layers of 256-d queries
    (configs/vg/opendet.yaml)."""

    backbone: Literal["tiny", "resnet50"] = "tiny"  # trainers.modeling.backbones.BACKBONES; FPN maps feed the encoder
    backbone_weights: str | None = None  # local ImageNet checkpoint (resnet50 only); None = random
    trainable_backbone_layers: int = 3
    feature_maps: tuple[str, ...] = ("1", "2")  # FPN maps as encoder tokens; tiny at 128 px: 16×16 + 8×8 tokens
    image_size: int = 128  # images become a square of this side (ShapesOV renders 128–256 px per side)
    # letterbox: the aspect ratio kept, the longer side scaled to `image_size` and the rest zero-padded (the
    # released code's augmentations, ResizeShortestEdge or EfficientDetResizeCrop, and DETR's padded batches keep it
    # too); square: stretched to the square, so a shape's aspect ratio changes with its image's (docs/results.md, Open-Det).
    resize: Literal["square", "letterbox"] = "letterbox"
    hidden_dim: int = 64  # query width (the paper: 256; 64 fits the 2-core demo)
    num_heads: int = 4
    ffn_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 4  # the paper: 6 = 4 one-to-many + 2 one-to-one
    one_to_one_layers: int = 2  # Open-Det Sec. 3.2: the last two layers use self-attention and one-to-one matching
    selection_threshold: float = 0.05  # Open-Det Sec. 3.2, eq. 1: tokens with σ(score) > 0.05 become queries
    min_queries: int = 10  # bounds on the threshold's count (an untrained head passes every or no token)
    max_queries: int = 100
    # Deformable DETR (Zhu et al. 2021) samples 4 points per head and level; 0 = global attention over all tokens.
    sampling_points: int = 4
    anchor_scale: float = 0.05  # encoder proposals: anchor side 0.05 · 2^level of the image (DINO two-stage)

    def __post_init__(self) -> None:
        if not 1 <= self.one_to_one_layers <= self.decoder_layers:
            raise ValueError(f"opendet.detector.one_to_one_layers={self.one_to_one_layers} must be in [1, "
                             f"opendet.detector.decoder_layers={self.decoder_layers}]")
        if not 1 <= self.min_queries <= self.max_queries:
            raise ValueError(f"opendet.detector.min_queries={self.min_queries} must be in [1, "
                             f"opendet.detector.max_queries={self.max_queries}]")
        if self.sampling_points < 0:
            raise ValueError(f"opendet.detector.sampling_points={self.sampling_points} must be >= 0 "
                             "(0 = global attention)")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"opendet.detector.hidden_dim={self.hidden_dim} must divide by "
                             f"opendet.detector.num_heads={self.num_heads}")


@dataclass(frozen=True)
class OpenDetLossConfig:
    """Switches, constants and weights of Open-Det training (paper Sec. 3, Appendix A.5 eq. 5–9).

    Where the paper is silent the released Open-Det2 code (projects/DDETRS) is the default; where the paper prints
    a different form, a switch keeps it (`…=eq4`, `…=paper`)."""

    # --- component switches (Table 3 columns: ODR, BVLA-M, VLD-M, ONG, Losses; Tables 4 and 5) ---
    one_to_many_matching: bool = True  # ODR, Sec. 3.2: one-to-many in the first decoder layers; off = one-to-one
    bidirectional_alignment: bool = True  # BVLA-M, eq. 2; off = V-to-L cosine only
    vl_distillation: bool = True  # VLD-M loss, eq. 7
    name_generator: bool = True  # ONG, the T5 language-modelling loss, eq. 9
    lora_head: bool = True  # Table 5: LoRA on the frozen LM head (Sec. 3.5, A.2)
    text_denoising: bool = True  # Table 5: noisy text embeddings reconstructed by T5 (Sec. 3.5)
    masked_alignment: bool = True  # Table 4: MAL mask on the alignment targets; off = one-hot targets (GenerateU)
    joint_loss: bool = True  # Table 4: Joint Loss on the binary head; off = sigmoid focal loss on matched / unmatched

    # --- BVLA-M (Sec. 3.3) ---
    # Released code: each image's queries are scored against that image's own object texts (padded per image);
    # `batch` scores every query against every object text of the batch.
    alignment_texts: Literal["image", "batch"] = "image"
    # Released code: the queries of the one-to-one layers are refined once more (deformable cross-attention on the
    # encoder memory around their boxes, then an FFN) before they are scored; off = the decoder's queries as they are.
    refine_aligned_queries: bool = True

    # --- Masked Alignment Loss (Sec. 3.6) ---
    same_name_threshold: float = 0.999  # released code: cos ≥ 0.999 (the paper prints 0.99)
    focal_alpha: float = 0.25  # sigmoid focal loss (Lin et al., RetinaNet; DESIGN: α 0.25)
    focal_gamma: float = 2.0  # γ 2 (same source)
    # positive_entries (released code): Σ focal / the number of positive entries left after the masks;
    # matched_queries: / the matched queries (DETR's num_boxes).
    alignment_normalizer: Literal["matched_queries", "positive_entries"] = "positive_entries"
    # Released code: in the one-to-one layers, for an image whose object count fills the batch's padded text width,
    # pairs whose predicted box has IoU < 0.05 with the text's box leave the loss; 0 = no such mask.
    alignment_min_iou: float = 0.05

    # --- the binary (objectness) head: loss_bce ---
    # released: sigmoid focal loss on the objectness logit + the Joint Loss, both / the number of boxes (objects ×
    # the layer's one-to-many copies); eq4: the Joint Loss alone / the number of queries, as eq. 4 prints it.
    binary_loss: Literal["released", "eq4"] = "released"
    # --- Joint Loss (Sec. 3.6, eq. 4; constants from the released Open-Det2 code) ---
    joint_alpha: float = 0.25  # Open-Det Sec. 3.6: α = 0.25 (default)
    joint_min_iou: float = 0.01  # released code: IoU clamped at ≥ 0.01 before the power
    joint_min_target: float = 0.1  # released code: target t clamped at ≥ 0.1
    # Released code: only t is detached; w⁺ = (t − p)² and w⁻ = p², (1 − t)·p² keep their gradient. True detaches
    # them as well.
    joint_detach_weights: bool = False

    # --- VLD-M (Sec. 3.4) ---
    # released: each query version is lifted by a 3-layer MLP plus a gated identity path, fused by a bias-free
    # linear layer, the refinements read detached queries; paper: 2-layer MLPs ("two linear layers and an
    # activation") and a linear fusion.
    distiller_form: Literal["released", "paper"] = "released"
    # Released code: VLD-M (and the name loss) also run on the queries of the layer before the last (its aux layer 4
    # of 6); it distils the denoising queries too, which this detector does not have.
    auxiliary_language_layer: bool = True

    # --- text denoising (Sec. 3.5) ---
    denoise_probability: float = 0.9  # released code: each element noised with probability 0.9
    # released: noise std over the batch's padded (B, max objects, Dt) text tensor, one Bernoulli(0.9) draw per
    # element, every object of the image; paper: std of the objects' text embeddings, one draw per object.
    denoise_form: Literal["released", "paper"] = "released"
    # Released code: the T5 input (VL-prompt or noised text) is scaled to unit norm first.
    normalize_prompts: bool = True

    # --- names for objects no box label names: HD-OVD's pseudo boxes (store table pseudo_labels) ---
    # Pseudo boxes with their CLIP-picked label join the targets of matching, objectness, alignment, VLD-M and the
    # name generator (never the box losses); each pseudo name's language terms are weighted by its stored score s_j.
    # Labels naming a base class are left out when drop_pseudo_labels_naming_base is set (a choice of ours: neither
    # HD-OVD's paper nor its released code drops them).
    pseudo_names: bool = False
    # Pseudo boxes below this class-agnostic proposal score are left out (0 = keep all): on ShapesOV the proposals
    # that frame no object score 0.08 (median) and those on novel objects 0.71 (docs/results.md, "names for novel objects").
    pseudo_min_proposal_score: float = 0.5

    # --- matching costs (A.4: GIoU, L1 and alignment score; DINO's weights 2 / 5 / 2) ---
    match_cost_giou: float = 2.0
    match_cost_l1: float = 5.0
    match_cost_alignment: float = 2.0
    # Queries matched per object in the one-to-many layers (which layers: detector.one_to_one_layers).
    one_to_many_k: int = 2  # released code: HungarianMatcher_One_to_Many repeats each object 2 times

    # --- loss weights (eq. 5–6; DINO's box weights; released code: BCE 2.0, CLASS_WEIGHT 2.0 for MAL) ---
    weight_giou: float = 2.0
    weight_l1: float = 5.0
    weight_binary: float = 2.0
    weight_alignment: float = 2.0
    weight_distillation: float = 1.0  # released code: the VLD-M terms carry no weight (1)
    weight_name: float = 1.0  # released code: GENERATE_LOSS_WEIGHT 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.denoise_probability <= 1.0:
            raise ValueError(f"opendet.loss.denoise_probability must be in [0, 1], got {self.denoise_probability}")
        if not 0.0 < self.joint_alpha < 0.5:
            raise ValueError(f"opendet.loss.joint_alpha must be in (0, 0.5) so IoU keeps a positive power 1 − 2α, "
                             f"got {self.joint_alpha}")
        if not 0.0 <= self.alignment_min_iou < 1.0:
            raise ValueError(f"opendet.loss.alignment_min_iou must be in [0, 1), got {self.alignment_min_iou}")
        if self.one_to_many_k < 1:
            raise ValueError(f"opendet.loss.one_to_many_k must be >= 1, got {self.one_to_many_k}")


@dataclass(frozen=True)
class NameGeneratorConfig:
    """Which T5 (a local checkpoint, or the tiny demo config) and how it decodes."""

    # A T5 (model + tokenizer): a `save_pretrained` folder or a Hub repo id such as google/flan-t5-base (read
    # through the Hugging Face cache, vlm.hub); "" = the tiny random demo T5.
    t5_dir: str = ""
    lora_rank: int = 16  # Open-Det A.2: rank 16 (0.526M trainable head parameters for T5-base)
    lora_alpha: int = 1  # released code: loralib's default α = 1, so the adapter's scale α/r is 1/16
    # Released code (its last stage, STAGE 3): every T5 weight trains, the head's pre-trained weights included;
    # False freezes the weights under the LoRA head as the paper describes (Sec. 3.5, "in early training").
    lora_base_trainable: bool = True
    # The tiny demo T5 (names are 1–3 words; the ShapesOV vocabulary is ~20 words).
    tiny_d_model: int = 64
    tiny_d_ff: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 4
    max_name_tokens: int = 6  # generated tokens per name, </s> included
    num_beams: int = 3  # beam search at inference (Sec. 3.1: names generated by the LLM)


@dataclass(frozen=True)
class OpenDetInferenceConfig:
    """Vocabulary-free detection, then the evaluation's mapping of generated names to category names."""

    max_boxes: int = 0  # queries kept per image, best objectness first; 0 = all (released code)
    top_classes: int = 15  # Open-Det / GenerateU evaluation: the 15 most similar category names per box
    # Released code: every beam's name (num_beams of them) joined with ", " and prefixed with "a " is what the text
    # encoder embeds; False embeds the best beam alone.
    join_beams: bool = True
    name_prefix: str = "a "
    # How a box's similarities to the category names become its per-category score (with its objectness p):
    # released: sqrt(p · clamp(sim, 0, 1)); softmax: sqrt(p · softmax(τ·sim) · sim), τ = mapping_temperature
    # (GenerateU's softmax(100·t·E), which keeps near-synonym categories from all scoring high).
    mapping: Literal["released", "softmax"] = "released"
    mapping_temperature: float = 100.0  # GenerateU / CLIP: logits = 100 · cosine
    # Further mappings scored from the same generated names (no second detection pass); their AP goes into
    # metrics["other_mappings"][name], e.g. [softmax] beside the released rule.
    other_mappings: tuple[Literal["released", "softmax"], ...] = ()
    right_name_iou: float = 0.5  # a GT box is "found" by the best-overlapping query at IoU ≥ 0.5 (name table)
    # The fixed text encoder that embeds generated names and category names alike (Open-Det Sec. 4 / GenerateU:
    # one pre-trained text encoder for both). "store_clip": the store's CLIP and prompt ensemble, whose category
    # side is the store's vocab; "sentence_transformer": a mean-pooling sentence encoder such as all-MiniLM-L6-v2,
    # read from `name_encoder_dir` (a save_pretrained folder or a Hub repo id such as
    # sentence-transformers/all-MiniLM-L6-v2, through the Hugging Face cache), which embeds the category names too.
    name_encoder: Literal["store_clip", "sentence_transformer"] = "store_clip"
    name_encoder_dir: str = ""

    def __post_init__(self) -> None:
        if self.name_encoder == "sentence_transformer" and not self.name_encoder_dir:
            raise ValueError("opendet.inference.name_encoder=sentence_transformer needs "
                             "opendet.inference.name_encoder_dir, a sentence-transformers folder or Hub repo id")
        if self.name_encoder == "store_clip" and self.name_encoder_dir:
            raise ValueError(f"opendet.inference.name_encoder_dir={self.name_encoder_dir!r} is only read with "
                             "opendet.inference.name_encoder=sentence_transformer; the store's CLIP needs no directory")


@dataclass(frozen=True)
class OpenDetConfig:
    """The model side of an Open-Det run (`--set opendet.loss.joint_loss=false`)."""

    detector: QueryDetectorConfig = field(default_factory=QueryDetectorConfig)
    loss: OpenDetLossConfig = field(default_factory=OpenDetLossConfig)
    name_generator: NameGeneratorConfig = field(default_factory=NameGeneratorConfig)
    inference: OpenDetInferenceConfig = field(default_factory=OpenDetInferenceConfig)


@dataclass(frozen=True)
class OpenDetRunConfig(StoreTrainConfig):
    """An Open-Det run: the engine's keys for a store-streaming method and the `opendet` section."""

    method: Literal["opendet"] = "opendet"
    out_dir: str = "runs/opendet"
    opendet: OpenDetConfig = field(default_factory=OpenDetConfig)
