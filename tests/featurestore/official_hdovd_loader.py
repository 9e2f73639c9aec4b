"""A replay of what HD-OVD's official trainer (iSEE-Laboratory/HD-OVD, its mmdet 2.x copy) does with the files of
an export, written in our own words from the facts of its source, for the test of the other side of that seam.

It deliberately shares no code with featurestore/commands/hdovd: where the export and this replay disagree, the
test fails. What it replays, step by step:
- pycocotools' COCO: the image table in the `images` order of the file, annotations grouped by image in file order;
  mmdet's CocoDataset.load_annotations: labels = the file's categories named in CLASSES, in file order;
- CustomDataset: the proposals pickle, one entry per image of the file (it indexes it with the positions of the
  images it keeps), then _filter_imgs for training: images with an annotation of a labelled category and both
  sides >= 32 px;
- CocoDataset._parse_ann_info: the GT rows;
- the train pipeline of configs/myovd/ov_coco/*.py: LoadProposals (columns :4, an empty array → one [0, 0, 0, 0]
  box), Resize to (1333, 800) keeping the ratio (mmcv.imrescale's size, scale factors new/old, boxes clipped to the
  resized image); RandomFlip moves boxes but keeps their sizes, so it is left out;
- StandardRoIHead / AdaMixerDecoderPrompt.forward_train: torch.load of `pre_extracted_clip_text_feat + name +
  '.pth'` (name = file_name.split('/')[-1][:-4]), its four keys, the w > 32 and h > 32 mask of the pseudo boxes,
  the first max_pseudo_box_num of them, the same mask on the proposal embedding rows, the weighting score, and the
  index of each GT or pseudo box into cat(GT rows, pseudo rows);
- FasterRCNN: model.embedding_file rows indexed by label; PromptAnchorHead2: the (1, D) object embedding.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SCALE = (1333, 800)  # configs/myovd/ov_coco/*.py: IMAGE_SCALE, Resize keep_ratio=True
MIN_IMAGE_SIDE = 32  # CustomDataset._filter_imgs(min_size=32)
PSEUDO_MIN_SIDE = 32  # the RoI heads' size_mask: w > 32 and h > 32
MAX_PSEUDO_BOXES = 5  # roi_head max_pseudo_box_num=5
WEIGHT_MU, WEIGHT_SIGMA, WEIGHT_K = 0.31, 0.026, 1.3  # the RoI heads' weighting score (ViT-B/32 DetPro)


@dataclass
class TrainingImage:
    """One image as the RoI head receives it."""

    image_id: int
    file_name: str
    gt_boxes: np.ndarray  # (G, 4) float32, resized pixels
    gt_labels: np.ndarray  # (G,) int64
    proposals: np.ndarray  # (max(N, 1), 4) float32, resized pixels


@dataclass
class RoiHeadInputs:
    """What the RoI head computed from one image's .pth."""

    full_image: torch.Tensor  # (1, D)
    gt_features: torch.Tensor  # (G, D), unit rows
    pseudo_boxes: torch.Tensor  # (K, 4), K <= 5
    pseudo_image_features: torch.Tensor  # (K, D)
    pseudo_text_features: torch.Tensor  # (K, D)
    weights: torch.Tensor  # (K,)
    matched_features: torch.Tensor  # (G + K, D): row j is what box j of cat(GT, pseudo) is distilled towards


def _parse_annotations(annotations: list[dict], width: int, height: int, label_of: dict[int, int]):
    boxes, labels = [], []
    for ann in annotations:
        if ann.get("ignore", False):
            continue
        x1, y1, w, h = ann["bbox"]
        inter_w = max(0, min(x1 + w, width) - max(x1, 0))
        inter_h = max(0, min(y1 + h, height) - max(y1, 0))
        if inter_w * inter_h == 0:
            continue
        if "area" in ann.keys() and (ann["area"] <= 0 or w < 1 or h < 1):
            continue
        if ann["category_id"] not in label_of:
            continue
        if ann.get("iscrowd", False):
            continue  # gt_bboxes_ignore
        boxes.append([x1, y1, x1 + w, y1 + h])
        labels.append(label_of[ann["category_id"]])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def _resize(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    long_edge, short_edge = max(IMAGE_SCALE), min(IMAGE_SCALE)
    scale = min(long_edge / max(height, width), short_edge / min(height, width))
    new_w, new_h = int(width * scale + 0.5), int(height * scale + 0.5)
    factors = np.array([new_w / width, new_h / height, new_w / width, new_h / height], dtype=np.float32)
    resized = boxes * factors
    resized[:, 0::2] = np.clip(resized[:, 0::2], 0, new_w)
    resized[:, 1::2] = np.clip(resized[:, 1::2], 0, new_h)
    return resized


def load_training_images(ann_file: str, proposal_bytes: bytes, classes: list[str], unpickle,
                         filter_empty_gt: bool = True) -> list[TrainingImage]:
    """The training images, each through LoadProposals, LoadAnnotations and Resize (filter_empty_gt: mmdet's
    dataset option, on by default; off, every image of the file reaches the RoI head)."""
    data = json.loads(open(ann_file).read())
    images: dict[int, dict] = {}
    for record in data["images"]:
        images[record["id"]] = record  # pycocotools: one record per id, at the place of its first occurrence
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    cat_ids = [c["id"] for c in data["categories"] if c["name"] in classes]
    label_of = {cat_id: label for label, cat_id in enumerate(cat_ids)}
    proposals = unpickle(proposal_bytes)
    infos = list(images.values())
    # CustomDataset indexes the pickle with the positions of the kept images: one entry per image of the file, or
    # the entries silently belong to other images.
    assert len(proposals) == len(infos), (len(proposals), len(infos))
    with_annotation = {ann["image_id"] for ann in data.get("annotations", [])}
    with_label = {ann["image_id"] for ann in data.get("annotations", []) if ann["category_id"] in label_of}
    out = []
    for info, entry in zip(infos, proposals):
        if filter_empty_gt and info["id"] not in with_annotation & with_label:
            continue
        if min(info["width"], info["height"]) < MIN_IMAGE_SIDE:
            continue
        gt_boxes, gt_labels = _parse_annotations(by_image.get(info["id"], []), info["width"], info["height"],
                                                 label_of)
        if entry.shape[1] not in (4, 5):
            raise AssertionError(f"proposals should have shapes (n, 4) or (n, 5), but found {entry.shape}")
        boxes = entry[:, :4]
        if len(boxes) == 0:
            boxes = np.array([[0, 0, 0, 0]], dtype=np.float32)
        out.append(TrainingImage(info["id"], info.get("file_name", ""),
                                 _resize(gt_boxes, info["width"], info["height"]), gt_labels,
                                 _resize(boxes.astype(np.float32), info["width"], info["height"])))
    return out


def roi_head_inputs(image: TrainingImage, feature_dir: str) -> RoiHeadInputs:
    """feature_dir is the config value, concatenated as the official code does (so it must end with /)."""
    name = image.file_name.split("/")[-1][:-4]
    # The official code calls torch.load without weights_only; the safe variant reads the same plain tensors.
    loaded = torch.load(feature_dir + name + ".pth", map_location="cpu", weights_only=True)
    full_image = loaded["clip_full_image_embedding"]
    gt_features = F.normalize(loaded["gt_clip_image_embedding"].float(), dim=-1)
    pseudo = torch.from_numpy(image.proposals)
    size_mask = ((pseudo[:, 2] - pseudo[:, 0]) > PSEUDO_MIN_SIDE) & ((pseudo[:, 3] - pseudo[:, 1]) > PSEUDO_MIN_SIDE)
    pseudo = pseudo[size_mask][:MAX_PSEUDO_BOXES]
    # Boolean-mask indexing: an IndexError when the .pth has another number of rows than the image has proposals.
    image_features = F.normalize(loaded["proposal_clip_image_embedding"].float()[size_mask][:MAX_PSEUDO_BOXES], dim=-1)
    text_features = F.normalize(loaded["proposal_clip_text_embedding"].float()[size_mask][:MAX_PSEUDO_BOXES], dim=-1)
    weights = torch.sigmoid((torch.diag(image_features @ text_features.t()) - WEIGHT_MU) / WEIGHT_SIGMA) * WEIGHT_K
    table = torch.cat([gt_features, image_features])
    # AdaMixer indexes that table with (matched box index - 1): box j of cat(GT boxes, pseudo boxes) → row j. With
    # fewer GT rows than GT boxes the last boxes run off the table; with more, every pseudo box reads a GT row.
    assert len(gt_features) == len(image.gt_boxes), (image.image_id, len(gt_features), len(image.gt_boxes))
    matched = table[torch.arange(len(image.gt_boxes) + len(pseudo))]
    return RoiHeadInputs(full_image, gt_features, pseudo, image_features, text_features, weights, matched)


def class_prompts(embedding_file: str, labels: np.ndarray) -> torch.Tensor:
    """FasterRCNN: torch.load(embedding_file).float(), normalised rows, row = label."""
    embeddings = F.normalize(torch.load(embedding_file, map_location="cpu", weights_only=True).float(), dim=1)
    return embeddings[torch.from_numpy(labels)]


def objectness(object_file: str, features: torch.Tensor) -> torch.Tensor:
    """PromptAnchorHead2: features (N, HW, D) against the (1, D) object embedding → (N, HW, 1)."""
    obj = F.normalize(torch.load(object_file, map_location="cpu", weights_only=True).float(), dim=1)
    return F.normalize(features) @ F.normalize(obj).unsqueeze(-1)
