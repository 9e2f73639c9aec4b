"""Open-vocabulary detectors for HD-OVD, by name, and the contract between a training step and them.

One training step reads one `trainers.data.batching.DetectorInputs` (built by trainers.store_training from the
streamed store) and the base classes' text embeddings:

    batch.images:             B × (3, H, W) float in [0, 1], any sizes
    batch.targets:            B × {"boxes": (G, 4) float xyxy image pixels, "labels": (G,) int64 base-class index}
    batch.pseudo:             B × {"boxes": (P, 4) float xyxy pixels, "label_ids": (P,) int64 label id of the batch,
                                   "scores": (P,) stored s, "cos": (P,), "proposal_scores": (P,),
                                   "text_embeddings": (P, D)}: every labelled pseudo box, best proposal first
    batch.region_embeddings:  (Σ(G + P), D) float CLIP embeddings, per image its targets' boxes, then its pseudo boxes
    batch.image_embeddings:   (B, D) float CLIP embeddings of the whole images
    base_text_embeddings:     (M, D) float, the base classes' text embeddings, label index = row

    detector = build_detector(DetectorConfig(...), classifier)   # registry DETECTORS; HdovdConfig.classifier
    criterion = HdovdCriterion(HdovdLossConfig(...), detector.embed_dim)
    losses = hdovd_losses(detector, criterion, batch, base_text_embeddings)   # trainers.hdovd.batch_losses
    loss = sum(losses.values())                              # names: loss_rpn_objectness, loss_rpn_box,
                                                             # loss_box_reg, loss_cls, loss_ckd_instance,
                                                             # loss_rkd_instance, loss_ckd_image

`hdovd_losses` turns each pseudo box's stored score into its class weight α (eq. 5), calls `detector(images,
targets, pseudo, base_text_embeddings, classify_pseudo)` → `DetectorTrainOutput`, and `criterion(output,
region_embeddings, image_embeddings)`. The detector picks the pseudo boxes it reads (hdovd.detector:
min_pseudo_box_side, max_pseudo_boxes, pseudo_boxes_to_rpn) and the regions it distils; `output.region_rows` says
which rows of `region_embeddings` its region queries stand for. At evaluation, `detector.predict(images,
class_text_embeddings)` → per image `RegionPredictions(boxes, class_probs, queries, background_probs)`, which
`trainers.hdovd.inference.detect` turns into scored boxes with the ensemble of eq. 12 and NMS. Pseudo boxes never
enter the box regression. The criterion's queues are in its state_dict: checkpoint it with the detector.
"""
from __future__ import annotations

from typing import Callable

from trainers.hdovd.config import DetectorConfig
from trainers.hdovd.detector_base import BACKGROUND, DetectorTrainOutput, OpenVocabularyDetector, RegionPredictions
from trainers.hdovd.faster_rcnn import FasterRcnnOpenVocabulary

# Detector classes by DetectorConfig.name, each mapping the `hdovd.detector` section and the classifier head
# (`sigmoid` or `softmax_background`, HdovdConfig.classifier) onto its arguments.
DETECTORS: dict[str, Callable[[DetectorConfig, str], OpenVocabularyDetector]] = {
    "faster_rcnn": FasterRcnnOpenVocabulary.from_config,
}
# HD-OVD's query-based detector is AdaMixer trained by its own head (docs/switches.md, "HD-OVD's query-based detector"); it is
# not carried, so the registry holds the released code's other detector, Faster R-CNN.


def build_detector(config: DetectorConfig, classifier: str = "sigmoid") -> OpenVocabularyDetector:
    """The detector of `hdovd.detector` with the classifier head of the run's classification loss."""
    if config.name not in DETECTORS:
        raise KeyError(f"hdovd.detector.name={config.name!r} is unknown; choose one of {sorted(DETECTORS)}")
    return DETECTORS[config.name](config, classifier)


__all__ = [
    "BACKGROUND",
    "DETECTORS",
    "DetectorTrainOutput",
    "OpenVocabularyDetector",
    "RegionPredictions",
    "build_detector",
]
