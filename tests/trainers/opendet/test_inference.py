"""Open-Det inference: faiss name → category mapping (released) and GenerateU's softmax mapping, sqrt(objectness ·
weight) scores, joined beams with the "a " prefix, the store-CLIP encoder, the name table, and vocabulary-free
detection from a model."""
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from featurestore.atomic import sha256_file
from featurestore.manifest import ModelRecord
from featurestore.stages import EXTRACT_FEATURES, PSEUDO_LABELS
from featurestore.writer import ShardWriter
from trainers.opendet.evaluate import NameTally, format_name_table, format_size_table, size_bucket
from trainers.opendet.inference import (
    NamedBoxes,
    best_beam_categories,
    cached,
    category_weights,
    detect_named_boxes,
    name_detections,
    nearest_categories,
)
from trainers.opendet.name_encoder import store_clip_name_encoder
from trainers.opendet.config import OpenDetInferenceConfig
from trainers.vocabulary import ClassVocabulary
from tests.float32 import approx32

CATEGORIES = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]]), dim=-1)
TABLE = {"circle": torch.tensor([1.0, 0.0, 0.0]), "round thing": torch.tensor([0.8, 0.6, 0.0]),
         "sky": torch.tensor([0.0, 0.0, 1.0])}


def table_encoder(names):
    """A fixed text encoder over three names (the evaluation accepts any names → embeddings function)."""
    return torch.stack([TABLE[name] for name in names])


# The best beam alone and no prefix, so the table encoder sees the names it knows.
BEST_BEAM = OpenDetInferenceConfig(join_beams=False, name_prefix="")


def test_nearest_categories_by_hand():
    similarities, indices = nearest_categories(table_encoder(["round thing"]), CATEGORIES, k=2)
    # cos with the three categories: 0.8, 0.6, 0.96 → best two: category 2 (0.96), category 0 (0.8).
    assert indices.tolist() == [[2, 0]]
    assert similarities[0].tolist() == approx32([0.96, 0.8])


def test_scores_are_sqrt_of_objectness_times_similarity_and_negative_similarity_scores_zero():
    named = NamedBoxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]]), torch.tensor([0.64, 0.5]),
                       ["round thing", "sky"])
    detections = name_detections(named, table_encoder, CATEGORIES, dataclasses.replace(BEST_BEAM, top_classes=2))
    assert detections["labels"][:2].tolist() == [2, 0]
    assert detections["scores"][:2].tolist() == approx32([math.sqrt(0.64 * 0.96), math.sqrt(0.64 * 0.8)])
    assert detections["scores"][2:].tolist() == [0.0, 0.0]  # "sky" is orthogonal to every category
    assert detections["boxes"].shape == (4, 4) and torch.equal(detections["boxes"][1], named.boxes[0])
    assert detections["top1"][0] == 2  # "sky" ties at 0 with every category: any top-1 will do


def test_an_empty_name_is_no_detection():
    named = NamedBoxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]]), torch.tensor([0.9, 0.5]),
                       ["", "circle"])
    detections = name_detections(named, table_encoder, CATEGORIES, dataclasses.replace(BEST_BEAM, top_classes=1))
    assert detections["labels"].tolist() == [0] and torch.equal(detections["boxes"][0], named.boxes[1])
    assert detections["top1"].tolist() == [-1, 0]


def test_released_descriptions_join_every_beam_after_a_prefix():
    named = NamedBoxes(torch.zeros(3, 4), torch.ones(3), ["star", "", ""],
                       [("star", "red star", "cross"), ("", "circle", ""), ("", "", "")])
    assert named.descriptions() == ["star, red star, cross", "circle", ""]
    config = OpenDetInferenceConfig()
    assert (config.join_beams, config.name_prefix, config.max_boxes) == (True, "a ", 0)  # released defaults
    assert named.descriptions(config.join_beams, config.name_prefix) == ["a star, red star, cross", "a circle", ""]
    assert named.descriptions(join_beams=False, prefix="a ") == ["a star", "", ""]
    seen = []

    def recording(names):
        seen.extend(names)
        return torch.nn.functional.normalize(torch.ones(len(names), 3), dim=-1)

    detections = name_detections(named, recording, CATEGORIES, dataclasses.replace(config, top_classes=1))
    assert seen == ["a star, red star, cross", "a circle"]  # the third box has no name: no detection
    assert detections["top1"][2] == -1


def test_softmax_mapping_by_hand_keeps_near_synonyms_from_all_scoring_high():
    names = table_encoder(["round thing"])  # cosines 0.8, 0.6, 0.96 with the three categories
    released, released_labels = category_weights(names, CATEGORIES, k=3)
    assert released_labels.tolist() == [[2, 0, 1]] and released[0].tolist() == approx32([0.96, 0.8, 0.6])
    weights, labels = category_weights(names, CATEGORIES, k=3, mapping="softmax", temperature=10.0)
    exp = [math.exp(10 * c) for c in (0.8, 0.6, 0.96)]
    expected = {0: exp[0] / sum(exp) * 0.8, 1: exp[1] / sum(exp) * 0.6, 2: exp[2] / sum(exp) * 0.96}
    assert labels.tolist() == [[2, 0, 1]]
    assert weights[0].tolist() == approx32([expected[2], expected[0], expected[1]])
    # At τ = 100 (GenerateU) the runner-up weighs e^-16 of the best: 0.8 vs 0.96 no longer look alike.
    sharp, _ = category_weights(names, CATEGORIES, k=2, mapping="softmax")
    assert sharp[0, 0].item() == approx32(0.96) and sharp[0, 1].item() < 1e-6


def test_cached_encoder_embeds_each_distinct_name_once():
    calls = []

    def counting(names):
        calls.append(list(names))
        return table_encoder(names)

    encode = cached(counting)
    first = encode(["circle", "sky", "circle"])
    encode(["sky", "round thing"])
    assert calls == [["circle", "sky"], ["round thing"]]
    assert torch.equal(first[0], first[2])


def test_name_table_counts_found_boxes_and_right_names():
    vocabulary = ClassVocabulary((1, 2), ("circle", "star"), torch.tensor([False, True]), CATEGORIES[:2])
    tally = NameTally(vocabulary, iou_threshold=0.5)
    named = NamedBoxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]), torch.ones(2),
                       ["circle", "round thing"])
    gt = torch.tensor([[0.0, 0.0, 10.0, 11.0], [50.0, 50.0, 60.0, 60.0], [90.0, 90.0, 99.0, 99.0]])
    tally.add(named, gt, [1, 2, 2], top1=[1, 1])  # the star's box is named as a circle; the third GT is missed
    tally.add(NamedBoxes(gt[:1], torch.ones(1), [""]), gt[:1], [1], top1=[None])  # found, but left unnamed
    rows = {row["category"]: row for row in tally.table()}
    assert (rows["circle"]["found"], rows["circle"]["right"]) == (2, 1)
    assert (rows["star"]["found"], rows["star"]["right"], rows["star"]["top_names"]) == (1, 0, ["round thing"])
    assert tally.rate(novel=False) == 0.5 and tally.rate(novel=True) == 0.0
    assert "| star | novel | 1 | 0.0% |" in format_name_table(tally.table())


def test_name_table_counts_the_generated_name_and_the_joined_beams_apart():
    """A circle whose best beam is "circle" but whose three beams, joined, map to the star: the generated name is
    right, the joined text (what the released AP mapping embeds) is not."""
    vocabulary = ClassVocabulary((1, 2), ("circle", "star"), torch.tensor([False, True]), CATEGORIES[:2])
    tally = NameTally(vocabulary, iou_threshold=0.5)
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tally.add(NamedBoxes(box, torch.ones(1), ["circle"], [("circle", "star", "red star")]), box, [1], top1=[1],
              joined_top1=[2])
    rows = {row["category"]: row for row in tally.table()}
    assert (rows["circle"]["right_rate"], rows["circle"]["joined_right_rate"]) == (1.0, 0.0)
    assert tally.rate(novel=False) == 1.0 and tally.rate(novel=False, joined=True) == 0.0
    assert tally.rate(novel=True, joined=True) is None  # no star was found
    assert "| circle | base | 1 | 100.0% | 0.0% | 'circle' |" in format_name_table(tally.table())
    without = NameTally(vocabulary, iou_threshold=0.5)
    without.add(NamedBoxes(box, torch.ones(1), ["circle"]), box, [1], top1=[1])
    assert without.rate(novel=False, joined=True) is None and "joined" not in format_name_table(without.table())


def test_size_buckets_follow_coco_area_ranges():
    """pycocotools' areaRng: small up to 32², medium up to 96², large above."""
    assert [size_bucket(a) for a in (1.0, 1024.0, 1025.0, 9216.0, 9217.0)] == [
        "small", "small", "medium", "medium", "large"]


def test_name_table_by_size_counts_found_boxes_per_bucket_and_split():
    vocabulary = ClassVocabulary((1, 2), ("circle", "star"), torch.tensor([False, True]), CATEGORIES[:2])
    tally = NameTally(vocabulary, iou_threshold=0.5)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 90.0, 90.0], [100.0, 0.0, 140.0, 40.0]])
    named = NamedBoxes(boxes, torch.ones(3), ["circle", "square", "star"])
    # A small circle named right, a medium circle named wrong, a medium star named right; areas as the file says.
    tally.add(named, boxes, [1, 1, 2], top1=[1, None, 2], gt_areas=[80.0, 1600.0, 1500.0])
    rows = {(row["size"], row["split"]): row for row in tally.size_table()}
    assert set(rows) == {("small", "base"), ("medium", "base"), ("medium", "novel")}
    assert [(rows[k]["found"], rows[k]["right_rate"]) for k in sorted(rows)] == [(1, 0.0), (1, 1.0), (1, 1.0)]
    assert "| small | base | 1 | 100.0% |" in format_size_table(tally.size_table())


def test_best_beam_categories_embed_the_best_beam_alone_after_the_prefix():
    named = NamedBoxes(torch.zeros(3, 4), torch.ones(3), ["round thing", "", "circle"],
                       [("round thing", "sky", "circle"), ("", "sky", ""), ("circle", "sky", "round thing")])
    seen = []

    def recording(names):
        seen.extend(names)
        return table_encoder([name.removeprefix("a ") for name in names])

    # "round thing" is nearest category 2 (cos 0.96), "circle" category 0; the unnamed box maps to nothing.
    assert best_beam_categories(named, recording, CATEGORIES, prefix="a ").tolist() == [2, -1, 0]
    assert seen == ["a round thing", "a circle"]


def test_store_clip_encoder_maps_names_to_their_shape(tmp_path):
    """The committed ShapesOV CLIP teacher: a generated name is nearest to its own shape's category name."""
    writer = ShardWriter(tmp_path / "store", EXTRACT_FEATURES, 64)
    committed_clip = Path(__file__).resolve().parents[3] / "assets" / "teachers" / "clip"
    weights = committed_clip / "open_clip_model.safetensors"
    writer.open_stage({}, "hash", {"clip": ModelRecord(sha256=sha256_file(weights), name=f"local-dir:{committed_clip}",
                                                       path=str(weights), prompts="single")})
    writer.finish_stage({"images": 0})
    encode = store_clip_name_encoder(str(tmp_path / "store"))
    shapes = ["circle", "square", "triangle", "star", "crescent", "cross", "heart", "diamond"]
    categories = encode(shapes)
    assert categories.shape == (8, 64)
    assert torch.allclose(categories.norm(dim=-1), torch.ones(8), atol=1e-5)
    _, nearest = nearest_categories(encode(["a star", "circle"]), categories, k=1)
    assert [shapes[i] for i in nearest[:, 0].tolist()] == ["star", "circle"]


def test_missing_extract_stage_is_named(tmp_path):
    writer = ShardWriter(tmp_path / "store", PSEUDO_LABELS, 8)
    writer.open_stage({}, "hash")
    writer.finish_stage({})
    with pytest.raises(KeyError, match="extract_features"):
        store_clip_name_encoder(str(tmp_path / "store"))


def test_detect_named_boxes_returns_pixel_boxes_and_strings():
    from tests.trainers.opendet.test_detector import _batch, _model

    model = _model()
    images, _ = _batch()
    named = detect_named_boxes(model.eval(), images, OpenDetInferenceConfig(max_boxes=5))
    assert [len(n.names) for n in named] == [5, 5]
    assert all(isinstance(name, str) for n in named for name in n.names)
    assert all(len(beams) == 3 and beams[0] == name for n in named for name, beams in zip(n.names, n.beams))
    every = detect_named_boxes(model.eval(), images, OpenDetInferenceConfig())  # max_boxes 0: every query
    queries = model(images).padding.logical_not().sum(dim=1).tolist()
    assert [len(n.names) for n in every] == queries
    named = detect_named_boxes(model.eval(), images, OpenDetInferenceConfig(max_boxes=100))
    assert (named[1].boxes[:, [1, 3]] <= 96).all() and (named[1].boxes >= 0).all()  # inside the 96-px-high image
    assert ((named[0].objectness >= 0) & (named[0].objectness <= 1)).all()
