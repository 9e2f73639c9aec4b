"""Which store rows feed each image of the official trainer's annotation file, and every reason they cannot.

Planning reads no embedding (ids, boxes, sources, categories and labels only), so every problem surfaces before a
single file is written: a store the official trainer must not or cannot train on, images of the file the store lacks,
GT rows the store has no region for, two images that HD-OVD would load from one .pth file.

A proposal without a pseudo label (its caption named no object, or the pseudo-labels stage filed a failure row for it)
is left out, from proposals.pkl and from the .pth rows alike: the official RoI heads make every proposal a pseudo box
whose text embedding is its class, and a zero text row would be a class of its own (with a near-zero weight).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from featurestore.commands.hdovd.layout import feature_file_name
from featurestore.commands.hdovd.official_view import GtRow, OfficialImage, OfficialView
from featurestore.reader import StoreReader
from featurestore.regions import Regions
from featurestore.stages import EXTRACT_FEATURES, PSEUDO_LABELS

# Store boxes are float32 copies of the clipped float64 boxes: at 10 000 px, float32 steps are 1e-3 px apart.
BOX_RTOL = 1e-6
BOX_ATOL = 1e-3
MAX_LISTED = 20  # problems listed by name in one error; the rest are counted


class ExportRefused(ValueError):
    """The store or the annotation file cannot feed the official trainer; the message says how to proceed."""


@dataclass(frozen=True)
class ImagePlan:
    image_id: int
    shard: int
    feature_file: str  # name under OUT/features/
    gt_region_ids: tuple[int, ...]  # the store's GT regions in the order of the image's official GT rows
    proposal_region_ids: tuple[int, ...]  # its labelled proposal regions, in region order (= score order)


@dataclass
class ExportPlan:
    images: list[ImagePlan] = field(default_factory=list)  # in the annotation file's order: the pickle's
    missing: list[OfficialImage] = field(default_factory=list)  # images of the file without features in the store
    store_only: int = 0  # store images the file does not list (not exported)
    unused_gt: int = 0  # store GT regions that are no GT row for the official loader (ignore flag, area <= 0, ...)
    unlabelled_proposals: int = 0  # proposals of exported images without a pseudo label (not exported)
    problems: list[str] = field(default_factory=list)


def extract_shards(reader: StoreReader) -> list[int]:
    return sorted({c.shard for c in reader.table_commits("images") if c.stage == EXTRACT_FEATURES})


def check_store(reader: StoreReader) -> None:
    """Refuse a store HD-OVD must not train on (novel GT inside) or whose .pth files would lack a key."""
    stage = reader.manifest.stages.get(EXTRACT_FEATURES)
    strict = stage.setting("dataset.strict") if stage else None
    if strict is not True:
        recorded = "records dataset.strict = false" if strict is False else "does not record dataset.strict"
        raise ExportRefused(
            f"store {reader.root} {recorded}: its GT regions may include novel classes, and their embeddings "
            f"(gt_clip_image_embedding) would leak novel objects into HD-OVD's training. Extract a store with "
            f"dataset.strict=true (make extract-features STORE=<new store> SET=\"dataset.strict=true\") and "
            f"export that")
    shards = extract_shards(reader)
    labelled = set(reader.shards("pseudo_labels"))
    if not labelled:
        raise ExportRefused(
            f"store {reader.root} has no pseudo_labels table: HD-OVD's RoI heads read proposal_clip_text_embedding "
            f"from every .pth unconditionally. Run the pseudo-labels stage first "
            f"(make pseudo-labels STORE={reader.root})")
    unlabelled = [shard for shard in shards if shard not in labelled]
    if unlabelled:
        raise ExportRefused(
            f"store {reader.root}: the {PSEUDO_LABELS} stage has not committed shards {unlabelled[:MAX_LISTED]} of "
            f"{len(shards)}; rerun it (make pseudo-labels STORE={reader.root}: it computes only what is missing)")


def labelled_keys(reader: StoreReader, shard: int) -> set[tuple[int, int]]:
    """(image_id, region_id) of the pseudo boxes of one shard that have a pseudo label."""
    rows = reader.read_shard(PSEUDO_LABELS, shard, ["image_id", "region_id", "label"])
    return {(i, r) for i, r, label in zip(rows.column("image_id").to_pylist(), rows.column("region_id").to_pylist(),
                                          rows.column("label").to_pylist()) if label is not None}


def store_class_names(reader: StoreReader) -> dict[int, str]:
    """category id → class name, from the vocab rows of kind "class"."""
    vocab = reader.read_table("vocab", ["name", "kind", "category_id"]).to_pylist()
    return {row["category_id"]: row["name"] for row in vocab if row["kind"] == "class"}


def match_gt(rows: tuple[GtRow, ...], candidates: list[tuple[int, str, np.ndarray]]
             ) -> tuple[list[int], GtRow | None]:
    """The store GT region of each official GT row, in order: same category name, same clipped box.

    candidates: (region id, class name, xyxy box) of the image's GT regions in region order (= annotation order).
    Returns the region ids and the first row that has none (None when every row has one). Regions left over are
    annotations the official loader does not make GT rows (an `ignore` flag, an `area` of 0).
    """
    chosen: list[int] = []
    start = 0
    for row in rows:
        for position in range(start, len(candidates)):
            region_id, name, box = candidates[position]
            if name == row.category and np.allclose(box, row.box, rtol=BOX_RTOL, atol=BOX_ATOL):
                chosen.append(region_id)
                start = position + 1
                break
        else:
            return chosen, row
    return chosen, None


def _image_problems(image: OfficialImage, stored: dict, view: OfficialView) -> list[str]:
    where = f"image {image.image_id} ({image.file_name})"
    problems = []
    if (stored["width"], stored["height"]) != (image.width, image.height):
        problems.append(f"{where}: {image.width}x{image.height} in {view.path} but {stored['width']}x"
                        f"{stored['height']} in the store")
    if stored["file_name"].split("/")[-1] != image.file_name.split("/")[-1]:
        problems.append(f"{where}: the store has image id {image.image_id} as {stored['file_name']}")
    return problems


def _gt_problem(image: OfficialImage, chosen: list[int], unmatched: GtRow, candidates: list, view: OfficialView) -> str:
    return (f"image {image.image_id} ({image.file_name}): the official loader makes {len(image.gt)} GT rows of "
            f"{view.path}, the store has GT regions for {len(chosen)} of them (of its {len(candidates)}); annotation "
            f"{unmatched.annotation_id} ({unmatched.category}, box {[round(v, 2) for v in unmatched.box]}) has none")


def plan_export(reader: StoreReader, view: OfficialView, class_names: dict[int, str]) -> ExportPlan:
    """Join the store's images and regions with the file's images; problems are collected, not raised."""
    wanted = {image.image_id: image for image in view.images}
    found: dict[int, ImagePlan] = {}
    plan = ExportPlan()
    for shard in extract_shards(reader):
        images = reader.read_shard("images", shard, ["image_id", "file_name", "width", "height"]).to_pylist()
        labelled = labelled_keys(reader, shard)
        regions = Regions.from_arrow(reader.read_shard("regions", shard, ["image_id", "region_id", "box", "source",
                                                                          "category_id"]))
        order = np.lexsort((regions.region_id, regions.image_id))
        regions = regions.take(order)
        rows_of = regions.rows_by_image()
        for stored in images:
            image = wanted.get(stored["image_id"])
            if image is None:
                plan.store_only += 1
                continue
            plan.problems += _image_problems(image, stored, view)
            rows = rows_of.get(image.image_id, np.array([], dtype=np.int64))
            candidates = [(int(regions.region_id[i]), class_names.get(regions.category_id[i], ""), regions.box[i])
                          for i in rows if regions.source[i] == "gt"]
            chosen, unmatched = match_gt(image.gt, candidates)
            if unmatched is not None:
                plan.problems.append(_gt_problem(image, chosen, unmatched, candidates, view))
            plan.unused_gt += len(candidates) - len(chosen)
            proposals = [int(regions.region_id[i]) for i in rows if regions.source[i] == "proposal"]
            kept = tuple(r for r in proposals if (image.image_id, r) in labelled)
            plan.unlabelled_proposals += len(proposals) - len(kept)
            found[image.image_id] = ImagePlan(image.image_id, shard, feature_file_name(image.file_name),
                                              tuple(chosen), kept)
    plan.missing = [image for image in view.images if image.image_id not in found]
    plan.images = [found[image.image_id] for image in view.images if image.image_id in found]
    plan.problems += _shared_feature_files(plan.images, wanted)
    return plan


def _shared_feature_files(images: list[ImagePlan], wanted: dict[int, OfficialImage]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for image in images:
        other = first.setdefault(image.feature_file, image.image_id)
        if other != image.image_id:
            problems.append(f"images {other} ({wanted[other].file_name}) and {image.image_id} "
                            f"({wanted[image.image_id].file_name}) would both be read from {image.feature_file}: "
                            f"HD-OVD names the file by the image file name without folders and its last 4 characters")
    return problems
