"""The config of an HD-OVD run: the engine's keys (trainers.config) plus the `hdovd` section (detector, losses,
inference).

Choices are `Literal` types (the loader refuses anything else); ranges are checked in `__post_init__`, and messages
name the dotted key from the run config's root (`hdovd.loss.tau_ckd`). Defaults are the CPU demo on ShapesOV; the
real-data settings are the presets under configs/ (configs/ov_coco/hdovd.yaml, configs/ov_lvis/hdovd.yaml).
No key is without freedom: the classifier head follows the classification loss, eq. 12's temperature is τ_ckd.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainers.config import StoreTrainConfig

# How a pseudo box's stored score becomes its weight α of eq. 5 (trainers.pseudo_weights.PseudoBoxWeighting).
PseudoWeightTransform = Literal["as_stored", "eq5"]

# How eq. 12's p_dis turns cosines into probabilities (InferenceConfig.distill_probability).
DistillProbability = Literal["sigmoid", "softmax"]


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector (registry name), its backbone and sizes, and how it classifies. Defaults: the CPU demo
    detector; configs/ov_coco/hdovd.yaml holds torchvision's fasterrcnn_resnet50_fpn sizes."""

    name: Literal["faster_rcnn"] = "faster_rcnn"  # key of trainers.hdovd.detectors.DETECTORS
    backbone: Literal["tiny", "resnet50"] = "tiny"  # key of trainers.modeling.backbones.BACKBONES
    # Local ImageNet checkpoint of the backbone (.pth state dict or .safetensors); None = random initialisation.
    backbone_weights: str | None = None
    trainable_backbone_layers: int = 3  # torchvision's default for a pretrained ResNet-50 FPN
    embed_dim: int = 512  # CLIP ViT-B/32 embedding width (HD-OVD's teacher, Sec. IV-B)
    tau_cls: float = 50.0  # HD-OVD eq. 4: τ_cls = 50

    # Input size: shorter side to min_size, longer side at most max_size (torchvision GeneralizedRCNNTransform).
    min_size: int = 128  # ShapesOV demo renders at 128 px (DESIGN, embedded sample)
    max_size: int = 128
    # Proposal and RoI budget. The demo prototype: 100 post-NMS proposals and 64 sampled RoIs per image, a 256-d
    # box head (torchvision's 2000 / 512 / 1024 were ten times slower per step on 2 cores).
    rpn_pre_nms_top_n_train: int = 300
    rpn_post_nms_top_n_train: int = 100
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    box_batch_size_per_image: int = 64
    box_positive_fraction: float = 0.25  # Faster R-CNN / torchvision default
    representation_size: int = 256
    # RoIAlign bilinear samples per bin side (torchvision's MultiScaleRoIAlign: 2). Its CPU backward was 36% of a
    # demo training step (py-spy); 1 sample per bin makes the pooling about 2x cheaper.
    roi_sampling_ratio: int = 2

    # --- which pseudo boxes the detector reads (released FasterRCNN.forward_train, StandardRoIHead.forward_train) ---
    # A pseudo box counts when it is wider and taller than this many pixels of the detector's input (released: > 32 at
    # its 1333 × 800 input); the first `max_pseudo_boxes` of those (the store lists them best proposal first) are
    # classified and distilled (HD-OVD Sec. IV-B / Table IX: 5).
    min_pseudo_box_side: float = 32.0
    max_pseudo_boxes: int = 5
    # Released (add_pseudo_box_to_rpn=True): every counted pseudo box, not only the first `max_pseudo_boxes`, joins
    # the RPN's ground truth, which trains the proposals' recall of novel objects.
    pseudo_boxes_to_rpn: bool = True

    def __post_init__(self) -> None:
        if self.max_pseudo_boxes < 0 or self.min_pseudo_box_side < 0:
            raise ValueError(f"hdovd.detector.max_pseudo_boxes and hdovd.detector.min_pseudo_box_side must be >= 0, "
                             f"got {self.max_pseudo_boxes} and {self.min_pseudo_box_side}")


@dataclass(frozen=True)
class HdovdLossConfig:
    """Switches, variants, temperatures and weights of the HD-OVD training losses (paper Sec. III, eq. 1–11)."""

    # --- component switches (Table V columns: CKD, RKD, Cls., Wei., image) ---
    instance_contrastive: bool = True  # L_ckd^ins, eq. 1–2
    instance_relational: bool = True  # L_rkd^ins, eq. 3
    pseudo_classes: bool = True  # pseudo-label text embeddings join the classifier (eq. 4, "Cls.")
    pseudo_weighting: bool = True  # α_j of eq. 5 for pseudo classes ("Wei."; pseudo_weight_transform); off: 1
    image_contrastive: bool = True  # L_ckd^img, eq. 6–10

    # --- which regions are distilled (Table VI: base / pseudo / both; how many pseudo boxes: hdovd.detector) ---
    distill_regions: Literal["base_and_pseudo", "base", "pseudo"] = "base_and_pseudo"

    # --- variants: the paper's formula or the released code's ---
    # sigmoid_bce: eq. 1–2 (BCE, positives on the diagonal); info_nce: released code, bidirectional CE at τ_ckd.
    instance_contrastive_variant: Literal["sigmoid_bce", "info_nce"] = "sigmoid_bce"
    # sigmoid_focal: eq. 4, a sigmoid per class (background = no class fires);
    # weighted_softmax: released code, CE over the classes and a learnable background embedding.
    # The detector's classifier head follows (CLASSIFIER_OF_LOSS).
    classification_variant: Literal["sigmoid_focal", "weighted_softmax"] = "sigmoid_focal"
    # How a pseudo box's stored score becomes its weight α (trainers.pseudo_weights): `as_stored` is the released
    # code's s = σ((cos − μ)/σ)·k as the pseudo-labels stage wrote it; `eq5` is the paper's σ of the standardised
    # cosine, with the μ, σ of that stage (the store's manifest).
    pseudo_weight_transform: PseudoWeightTransform = "as_stored"
    # eq3: KL(P_q || P_e) of softmax(τ_rkd·cos), student first, as eq. 3 prints it. released: the released code's
    # mmdet KnowledgeDistillationKLDivLoss, T²·KL(P_e || P_q) of softmax(τ_rkd·cos / T), T = 10 (rkd_temperature).
    rkd_variant: Literal["eq3", "released"] = "eq3"
    rkd_temperature: float = 10.0  # mmdet KnowledgeDistillationKLDivLoss default T, kept by the released config
    # Eq. 3 keeps the diagonal (self-similarity, constant 1·τ_rkd on both sides); True drops it from both softmaxes.
    rkd_exclude_diagonal: bool = False

    # --- temperatures (HD-OVD Sec. IV-B and released config) ---
    tau_ckd: float = 20.0  # HD-OVD eq. 2 and eq. 9–10: τ_ckd = 20
    tau_rkd: float = 5.0  # HD-OVD eq. 3: τ_rkd = 5

    # --- loss weights (HD-OVD eq. 11) ---
    alpha_instance_contrastive: float = 0.5  # α1
    alpha_instance_relational: float = 5.0  # α2
    alpha_image_contrastive: float = 0.2  # α3
    weight_classification: float = 1.0  # eq. 11 adds L_cls unweighted
    weight_box: float = 1.0  # eq. 11 adds L_box unweighted

    # --- focal loss of eq. 4 (Lin et al., RetinaNet: α = 0.25, γ = 2) ---
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    # --- memory queues of negatives (released myfasterrcnn_r50_1x_coco.py, novel_obj_queue_dict: 2048 region
    # embeddings, 512 image embeddings) ---
    region_queue_length: int = 2048
    image_queue_length: int = 512

    def __post_init__(self) -> None:
        for name in ("tau_ckd", "tau_rkd", "rkd_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"hdovd.loss.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class InferenceConfig:
    """Scoring of eq. 12, NMS and top-k. Defaults: the paper's OV-COCO values; the presets hold the released Faster
    R-CNN's (configs/ov_coco/hdovd.yaml) and OV-LVIS's.

    With a classifier that has a background column (weighted_softmax) the ensemble keeps that column and renormalises
    each box's scores over classes and background, as the released StandardRoIHead.simple_test does; with the
    sigmoid classifier of eq. 4 there is no such column and eq. 12 is applied as printed."""

    ensemble: bool = True  # Table V "Ens."; False scores with p_cls alone
    beta_base: float = 0.35  # HD-OVD eq. 12, OV-COCO: β1 = 0.35 (released Faster R-CNN: alpha = 0.25)
    beta_novel: float = 0.65  # HD-OVD eq. 12, OV-COCO: β2 = 0.65 (released Faster R-CNN: beta = 0.45)
    # p_dis is scored at the temperature the queries were trained at, hdovd.loss.tau_ckd (eq. 12: τ_ckd).
    # "sigmoid" is eq. 12 as printed. "softmax" normalises over the evaluated classes as ViLD's ensemble does: with a
    # teacher whose cosines sit far from 0 (ShapesOV's CLIP: about 0.66 right class, 0.35 wrong) the sigmoid is
    # near 1 for every class, and p_dis^β then only lifts weak p_cls scores of novel classes.
    distill_probability: DistillProbability = "sigmoid"
    score_threshold: float = 0.05  # released config: rcnn score_thr 0.05
    nms_iou: float = 0.5  # released config: rcnn nms iou_threshold 0.5
    detections_per_image: int = 100  # COCO protocol: at most 100 detections per image
    min_box_size: float = 1e-2  # torchvision postprocess_detections: drop degenerate boxes


# Each classification loss is defined for one kind of classifier head (and its inference probabilities).
CLASSIFIER_OF_LOSS = {
    "sigmoid_focal": "sigmoid",  # eq. 4: p = sigmoid(cos·τ_cls), background = no class fires
    "weighted_softmax": "softmax_background",  # released code: softmax with a learnable background embedding
}


@dataclass(frozen=True)
class HdovdConfig:
    """The model side of an HD-OVD run (`--set hdovd.loss.instance_relational=false`)."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    loss: HdovdLossConfig = field(default_factory=HdovdLossConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # HD-OVD's pseudo classes (loss.pseudo_classes, Table V's "Cls.") come from the store's pseudo_labels stage. A
    # store without it would train the row without them while the run says HD-OVD, so training refuses it unless
    # this is true (the first log line then says what the run uses).
    allow_no_pseudo_labels: bool = False

    @property
    def classifier(self) -> str:
        """The detector's classifier head: the one the classification loss is defined for."""
        return CLASSIFIER_OF_LOSS[self.loss.classification_variant]


@dataclass(frozen=True)
class HdovdRunConfig(StoreTrainConfig):
    """An HD-OVD run: the engine's keys for a store-streaming method and the `hdovd` section."""

    method: Literal["hdovd"] = "hdovd"
    hdovd: HdovdConfig = field(default_factory=HdovdConfig)
