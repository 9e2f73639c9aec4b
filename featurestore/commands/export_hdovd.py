"""`export-hdovd STORE OUT --annotations FILE`: the store in the files HD-OVD's official (mmdet 2.x) trainer reads.

FILE is the annotation file that trainer trains on (its data.train.ann_file; in the strict setting, base classes
only, like HD-OVD's instances_train2017.48.json). The export follows FILE's image order, makes exactly the GT rows
mmdet makes of FILE and checks each image's GT rows against the store; layout and config keys:
featurestore/commands/hdovd/layout.py and docs/official-trainer.md. Everything is checked before anything is written, every file is
written under a temporary name and renamed, and the store is read one shard at a time.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from featurestore.arrow import embeddings_to_numpy
from featurestore.atomic import sha256_file, write_bytes_atomic
from featurestore.commands.hdovd import layout
from featurestore.commands.render import add_export_arguments, out_path
from featurestore.commands.hdovd.official_view import OfficialView, read_official_view
from featurestore.commands.hdovd.plan import (MAX_LISTED, ExportPlan, ExportRefused, ImagePlan, check_store,
                                              plan_export, store_class_names)
from featurestore.reader import StoreReader
from featurestore.regions import Regions
from pipelines.coco import AnnotationError
from vlm.clip import ModelLoadError, resolve_clip
from vlm.text_encoder import StoreTextEncoder


def add_arguments(parser) -> None:
    add_export_arguments(parser, "output folder (created if missing)")
    parser.add_argument("--annotations", required=True,
                        help="the COCO/LVIS JSON the official trainer reads (data.train.ann_file): its image order, "
                             "GT rows and category order are what the export follows")
    parser.add_argument("--restrict-annotations", action="store_true",
                        help="when the store lacks images of --annotations, export the others and write "
                             "OUT/annotations.json without the missing ones (instead of stopping)")


def _listed(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return "".join(f"\n  {line}" for line in lines[:MAX_LISTED]) + more


def _check_plan(plan: ExportPlan, view: OfficialView, store: str, restrict: bool) -> None:
    if plan.missing and not restrict:
        lines = [f"image {image.image_id} ({image.file_name})" for image in plan.missing]
        raise ExportRefused(
            f"{len(plan.missing)} images of {view.path} have no features in store {store}:{_listed(lines)}\n"
            f"Their extract-features failures rows say why (python -m featurestore sql {store} "
            f"\"SELECT image_id, kind, message FROM failures\"). Rerun with --restrict-annotations to export the "
            f"others and write OUT/{layout.RESTRICTED_ANNOTATIONS} without them, for data.train.ann_file.")
    if plan.problems:
        raise ExportRefused(
            f"the store cannot feed the official trainer reading {view.path}:{_listed(plan.problems)}\n"
            f"Pass the file that trainer reads (data.train.ann_file; strict setting: base classes only). A GT box the "
            f"store lacks may be an extract-features failures row (a box outside the image, an unknown category).")


def _pseudo_label_vectors(reader: StoreReader, shard: int) -> dict[tuple[int, int], np.ndarray]:
    """(image_id, region_id) → pseudo-label text embedding, for one shard (the plan exports labelled boxes only)."""
    labels = reader.read_shard("pseudo_labels", shard, ["image_id", "region_id", "text_embedding"])
    vectors = embeddings_to_numpy(labels.column("text_embedding")).astype(np.float32)
    keys = zip(labels.column("image_id").to_pylist(), labels.column("region_id").to_pylist())
    return dict(zip(keys, vectors))


def _write_shard(reader: StoreReader, shard: int, images: list[ImagePlan], features: Path) -> dict[int, np.ndarray]:
    """Write the .pth of `images` (all in `shard`); → image id → its (N, 5) proposals.pkl entry."""
    stored = reader.read_shard("images", shard, ["image_id", "embedding"])
    image_vectors = dict(zip(stored.column("image_id").to_pylist(), embeddings_to_numpy(stored.column("embedding"))))
    regions = Regions.from_arrow(reader.read_shard("regions", shard, ["image_id", "region_id", "box",
                                                                      "proposal_score", "embedding"]))
    row_of = {key: row for row, key in enumerate(zip(regions.image_id.tolist(), regions.region_id.tolist()))}
    texts = _pseudo_label_vectors(reader, shard)
    dim = regions.embedding.shape[1]
    entries = {}
    for image in images:
        gt = [row_of[(image.image_id, r)] for r in image.gt_region_ids]
        proposals = [row_of[(image.image_id, r)] for r in image.proposal_region_ids]
        text = np.asarray([texts[(image.image_id, r)] for r in image.proposal_region_ids],
                          dtype=np.float32).reshape(-1, dim)
        payload = layout.feature_payload(image_vectors[image.image_id].astype(np.float32),
                                         regions.embedding[gt], regions.embedding[proposals], text)
        write_bytes_atomic(features / image.feature_file, layout.tensor_bytes(payload))
        scores = np.asarray([regions.proposal_score[i] for i in proposals], dtype=np.float32).reshape(-1, 1)
        entries[image.image_id] = np.concatenate([regions.box[proposals].reshape(-1, 4), scores], axis=1)
    return entries


def _class_embeddings(reader: StoreReader, labels: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """(C, D) rows in the file's label order, then the store's classes the file does not list (base, then novel)."""
    vocab = reader.read_table("vocab")
    rows = vocab.drop_columns(["embedding"]).to_pylist()
    vectors = embeddings_to_numpy(vocab.column("embedding")).astype(np.float32)
    classes = {row["name"]: i for i, row in enumerate(rows) if row["kind"] == "class"}
    rest = sorted((i for name, i in classes.items() if name not in labels),
                  key=lambda i: (rows[i]["split"] != "base", rows[i]["category_id"]))
    order = [classes[name] for name in labels] + rest
    return vectors[order], [rows[i]["name"] for i in order]


def _object_embedding(reader: StoreReader) -> np.ndarray:
    """(1, D) float32: "object" through the store's own text encoder (its CLIP and prompt ensemble)."""
    clip = reader.manifest.store_clip(f"store {reader.root}")
    source = resolve_clip(clip.name, clip.checkpoint, clip.model_config_dir)
    return StoreTextEncoder.load(source, clip.prompts).encode([layout.OBJECT_TEXT])


def _restricted(view: OfficialView, plan: ExportPlan) -> dict:
    """The annotation file without the images the store lacks (and without their annotations)."""
    kept = {image.image_id for image in plan.images}
    data = dict(view.data)
    data["images"] = [record for record in view.data["images"] if int(record["id"]) in kept]
    data["annotations"] = [a for a in view.data.get("annotations", []) if int(a["image_id"]) in kept]
    return data


def _base_first_note(reader: StoreReader, names: list[str]) -> str:
    splits = {row["name"]: row["split"] for row in reader.read_table("vocab", ["name", "kind", "split"]).to_pylist()
              if row["kind"] == "class"}
    novel = [i for i, name in enumerate(names) if splits.get(name) == "novel"]
    if novel and any(splits.get(name) == "base" for name in names[novel[0]:]):
        return ("\nnote: the labels of the annotation file put novel classes before base ones; HD-OVD's detectors "
                "take rows 0..B-1 of model.embedding_file as the base classes (OV-COCO: 48)")
    return ""


def export(args) -> str:
    """Check, then write; → the summary printed. Raises ExportRefused, AnnotationError or ModelLoadError."""
    reader = StoreReader(args.store)
    check_store(reader)
    class_names = store_class_names(reader)
    view = read_official_view(args.annotations, frozenset(class_names.values()))
    plan = plan_export(reader, view, class_names)
    _check_plan(plan, view, args.store, args.restrict_annotations)
    object_vector = _object_embedding(reader)  # the last check: the store's CLIP must load
    classes, names = _class_embeddings(reader, view.labels)
    if object_vector.shape[1] != classes.shape[1]:
        raise ExportRefused(f"the store's CLIP embeds text in {object_vector.shape[1]} dimensions, its vocab has "
                            f"{classes.shape[1]}: the manifest names another model than the one that wrote the store")

    out = Path(out_path(args))
    (out / layout.FEATURES_DIR).mkdir(parents=True, exist_ok=True)
    by_shard: dict[int, list[ImagePlan]] = {}
    for image in plan.images:
        by_shard.setdefault(image.shard, []).append(image)
    entries: dict[int, np.ndarray] = {}
    for shard, images in sorted(by_shard.items()):
        entries.update(_write_shard(reader, shard, images, out / layout.FEATURES_DIR))
    write_bytes_atomic(out / layout.CLASS_EMBEDDINGS, layout.tensor_bytes(_tensor(classes)))
    write_bytes_atomic(out / layout.OBJECT_EMBEDDING, layout.tensor_bytes(_tensor(object_vector)))
    annotations = args.annotations
    if plan.missing:
        annotations = str(out / layout.RESTRICTED_ANNOTATIONS)
        write_bytes_atomic(Path(annotations), json.dumps(_restricted(view, plan)).encode())
    proposals = [entries[image.image_id].astype(np.float32) for image in plan.images]
    record = {"store": str(args.store), "annotations": annotations,
              "annotations_sha256": sha256_file(Path(annotations)),
              "images": len(plan.images), "images_left_out": [image.image_id for image in plan.missing],
              "images_without_proposals": sum(1 for p in proposals if len(p) == 0),
              "images_without_gt": sum(1 for image in plan.images if not image.gt_region_ids),
              "store_images_not_in_annotations": plan.store_only, "store_gt_regions_not_gt_rows": plan.unused_gt,
              "proposals_without_pseudo_label": plan.unlabelled_proposals,
              "classes": names, "config_keys": layout.CONFIG_KEYS}
    write_bytes_atomic(out / layout.EXPORT_RECORD, (json.dumps(record, indent=1) + "\n").encode())
    # Last: proposals.pkl ties the .pth files to the image order, so its presence means the export is complete.
    write_bytes_atomic(out / layout.PROPOSALS, pickle.dumps(proposals, protocol=layout.PICKLE_PROTOCOL))
    return (f"exported {len(plan.images)} images of {annotations} to {out}: {layout.FEATURES_DIR}/*.pth "
            f"({record['images_without_proposals']} without proposals, {record['images_without_gt']} without GT rows), "
            f"{layout.PROPOSALS}, {layout.CLASS_EMBEDDINGS} ({len(names)} x {classes.shape[1]}), "
            f"{layout.OBJECT_EMBEDDING}, {layout.EXPORT_RECORD}; left out: {len(plan.missing)} images the store lacks, "
            f"{plan.store_only} store images not in the file, {plan.unused_gt} store GT regions that are no GT row, "
            f"{plan.unlabelled_proposals} proposals without a pseudo label"
            + _base_first_note(reader, names))


def _tensor(rows: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))


def run(args) -> int:
    try:
        print(export(args))
    except (ExportRefused, AnnotationError, ModelLoadError) as error:
        print(f"error: {error}")
        return 2
    return 0
