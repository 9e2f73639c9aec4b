"""Evaluate a detector on a COCO-format set with base and novel classes: OV-COCO AP50 or LVIS AP_r/c/f."""
from __future__ import annotations

import torch

from trainers.config import DetectionEvalConfig
from trainers.data.image_tensors import load_image_tensor
from trainers.evaluation.lvis import evaluate_lvis
from trainers.evaluation.ov_coco import evaluate_ov_coco, load_coco_ground_truth, to_coco_results
from trainers.hdovd.config import InferenceConfig
from trainers.hdovd.inference import detect
from trainers.vocabulary import ClassVocabulary


def run_detector(detector, vocabulary: ClassVocabulary, config: DetectionEvalConfig, inference: InferenceConfig,
                 device: torch.device, tau_distill: float) -> tuple[object, list[dict]]:
    """(ground truth, COCO-format results) of `detector` over the evaluation images, batch by batch; eq. 12 at
    `tau_distill` (the run's τ_ckd)."""
    ground_truth = load_coco_ground_truth(config.annotations)
    missing = sorted(set(ground_truth.getCatIds()) - set(vocabulary.category_ids))
    if missing:
        raise ValueError(f"{config.annotations} has categories {missing[:10]} that the store's vocab lacks: "
                         "evaluate on the classes extract-features embedded")
    image_ids = sorted(ground_truth.getImgIds())
    if config.max_images:
        image_ids = image_ids[: config.max_images]
    embeddings = vocabulary.embeddings.to(device)
    results = []
    for start in range(0, len(image_ids), config.batch_size):
        ids = image_ids[start:start + config.batch_size]
        # The detector resizes internally and answers in the pixels of the image as read.
        images = [load_image_tensor(config.image_root, ground_truth.imgs[i]["file_name"], i, "eval.image_root")
                  .to(device) for i in ids]
        detections = detect(detector, images, embeddings, vocabulary.is_novel.to(device), inference, tau_distill)
        results += to_coco_results(detections, ids, vocabulary.category_ids)
    return ground_truth, results


def evaluate(detector, vocabulary: ClassVocabulary, config: DetectionEvalConfig, inference: InferenceConfig,
             device: torch.device, tau_distill: float) -> dict:
    ground_truth, results = run_detector(detector, vocabulary, config, inference, device, tau_distill)
    novel = [c for c, n in zip(vocabulary.category_ids, vocabulary.is_novel.tolist()) if n]
    base = [c for c, n in zip(vocabulary.category_ids, vocabulary.is_novel.tolist()) if not n]
    if config.protocol == "lvis":
        return evaluate_lvis(config.annotations, results)
    return evaluate_ov_coco(ground_truth, results, base, novel)
