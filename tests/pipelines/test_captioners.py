"""Each captioner on tiny real models saved in their real formats, through the registry; by local path and by hub
name (a cache in the hub's layout, tests/hub_cache.py)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image

from pipelines.captioners import (CaptionFailure, ImageRegions, build_captioner, captioner_provenance,
                                  resolve_captioner)
from pipelines.pseudo_labels_config import Blip2Section, CaptionerSection, ClipCapSection, GivenSection
from tests.hub_cache import add_commit, new_repo_id
from tests.tiny_teachers import CLIP_DIM, write_tiny_blip2, write_tiny_clipcap


def regions(image_id: int, file_name: str, count: int, seed: int = 0) -> ImageRegions:
    rng = np.random.default_rng(seed)
    boxes = np.array([[2 + 5 * r, 3, 30 + 5 * r, 40] for r in range(count)], dtype=np.float32)
    embeddings = rng.standard_normal((count, CLIP_DIM)).astype(np.float32)
    norms = np.linalg.norm(embeddings, axis=1)
    return ImageRegions(image_id, file_name, tuple(range(count)), boxes, embeddings / norms[:, None], norms)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("captioners")


@pytest.fixture(scope="module")
def clipcap_files(tmp):
    return write_tiny_clipcap(tmp / "clipcap")


def test_given_reads_jsonl_and_leaves_unknown_regions_empty(tmp):
    path = tmp / "captions.jsonl"
    path.write_text(json.dumps({"image_id": 7, "region_id": 1, "caption": "a red star"}) + "\n\n")
    captioner = build_captioner(CaptionerSection(name="given", given=GivenSection(str(path))))
    assert captioner.caption([regions(7, "a.png", 2)]) == [["", "a red star"]]


def test_given_by_image_id_and_box_matches_the_stored_boxes_by_iou(tmp):
    """regions(): boxes [2 + 5r, 3, 30 + 5r, 40]. A caption whose box is region 1's (a whisker off, as extract-features
    clips and rounds) goes to region 1, not to its neighbour 0 (IoU 0.85) or 2; a box nothing stored resembles is
    unmatched and counted; a region id still works beside boxes."""
    from pipelines.captioners.given import read_caption_jsonl

    path = tmp / "by_box.jsonl"
    lines = [{"image_id": 7, "bbox": [7.1, 3.0, 27.9, 37.0], "caption": "a red star"},   # region 1
             {"image_id": 7, "bbox": [200, 200, 20, 20], "caption": "a lost box"},       # nothing there
             {"image_id": 8, "bbox": [2, 3, 28, 37], "caption": "an image not stored"},
             {"image_id": 7, "region_id": 3, "caption": "by id"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    captioner = build_captioner(CaptionerSection(name="given", given=GivenSection(str(path))))
    assert captioner.caption([regions(7, "a.png", 4)]) == [["", "a red star", "", "by id"]]
    captions = read_caption_jsonl(path)
    assert captions.rows == 4
    stored = {7: regions(7, "a.png", 4).boxes}
    assert captions.unmatched(stored, 0.9) == ["image 7, box [200.0, 200.0, 220.0, 220.0]",
                                               "image 8, box [2.0, 3.0, 30.0, 40.0]"]
    # At a looser threshold the lost box still matches nothing, and two captions never share one box.
    loose = build_captioner(CaptionerSection(name="given", given=GivenSection(str(path), min_iou=0.5)))
    assert loose.caption([regions(7, "a.png", 4)]) == [["", "a red star", "", "by id"]]


def test_given_malformed_line_names_file_and_line(tmp):
    path = tmp / "bad.jsonl"
    path.write_text('{"image_id": 1, "region_id": 0, "caption": "x"}\n{"image_id": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        build_captioner(CaptionerSection(name="given", given=GivenSection(str(path))))


def test_given_missing_file_names_config_key(tmp):
    with pytest.raises(FileNotFoundError, match="captioner.given.path"):
        build_captioner(CaptionerSection(name="given", given=GivenSection(str(tmp / "none.jsonl"))))


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_clipcap_batches_stored_embeddings_across_images(clipcap_files, method):
    checkpoint, gpt_dir = clipcap_files
    config = ClipCapSection(checkpoint=str(checkpoint), gpt_dir=str(gpt_dir), method=method, beam_size=3,
                            max_tokens=6)
    captioner = build_captioner(CaptionerSection(name="clipcap", clipcap=config))
    batch = [regions(1, "a.png", 2, seed=1), regions(2, "b.png", 0), regions(3, "c.png", 1, seed=3)]
    together = captioner.caption(batch)
    assert [len(c) for c in together] == [2, 0, 1] and all(isinstance(t, str) for c in together for t in c)
    # Batching does not change a region's caption: the same embedding alone gives the same text.
    alone = captioner.caption([regions(3, "c.png", 1, seed=3)])
    assert alone[0] == together[2]


def test_clipcap_checkpoint_round_trip_drops_legacy_keys(clipcap_files):
    checkpoint, gpt_dir = clipcap_files
    state = torch.load(checkpoint, weights_only=True)
    assert any(k.endswith("attn.masked_bias") for k in state)
    captioner = build_captioner(CaptionerSection(name="clipcap", clipcap=ClipCapSection(
        checkpoint=str(checkpoint), gpt_dir=str(gpt_dir))))
    loaded = captioner.captioner.model.state_dict()
    for key, value in state.items():
        if not key.endswith(("attn.bias", "attn.masked_bias")):
            assert torch.equal(loaded[key], value), key


def test_clipcap_missing_checkpoint_names_config_key(tmp):
    with pytest.raises(FileNotFoundError, match="captioner.clipcap.checkpoint"):
        build_captioner(CaptionerSection(name="clipcap", clipcap=ClipCapSection(checkpoint=str(tmp / "x.pt"))))


@pytest.fixture(scope="module")
def blip2_setup(tmp):
    model_dir = write_tiny_blip2(tmp / "blip2")
    image_root = tmp / "images"
    image_root.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_root / "a.png")
    return model_dir, image_root


def test_blip2_recrops_and_reports_unreadable_images(blip2_setup):
    model_dir, image_root = blip2_setup
    config = Blip2Section(model_dir=str(model_dir), image_root=str(image_root), prompt="a photo of", max_new_tokens=4)
    captioner = build_captioner(CaptionerSection(name="blip2", blip2=config))
    results = captioner.caption([regions(1, "a.png", 2), regions(2, "missing.png", 1), regions(3, "../a.png", 1)])
    assert len(results[0]) == 2 and all(isinstance(t, str) and t for t in results[0])
    assert isinstance(results[1], CaptionFailure) and results[1].kind == "missing"
    assert isinstance(results[2], CaptionFailure) and results[2].kind == "path_escape"
    # Batching does not change a crop's caption.
    assert captioner.caption([regions(1, "a.png", 2)])[0] == results[0]


def test_blip2_missing_model_dir_names_config_key(tmp):
    with pytest.raises(FileNotFoundError, match="captioner.blip2.model_dir"):
        build_captioner(CaptionerSection(name="blip2", blip2=Blip2Section(model_dir=str(tmp / "none"))))


def test_clipcap_by_hub_names_reads_the_cache_and_fingerprints_like_the_same_files_on_disk(clipcap_files):
    checkpoint, gpt_dir = clipcap_files
    weights_repo, gpt_repo = new_repo_id("clipcap"), new_repo_id("gpt2")
    weights_snapshot = add_commit(weights_repo, {"clipcap.pt": checkpoint})
    gpt_snapshot = add_commit(gpt_repo, gpt_dir)
    on_disk = CaptionerSection(name="clipcap", clipcap=ClipCapSection(checkpoint=str(checkpoint),
                                                                      gpt_dir=str(gpt_dir), method="greedy"))
    by_name = CaptionerSection(name="clipcap", clipcap=ClipCapSection(
        checkpoint=f"hf-hub:{weights_repo}/clipcap.pt", gpt_dir=gpt_repo, method="greedy"))
    resolved = resolve_captioner(by_name)
    assert resolved.config.clipcap.checkpoint == str(weights_snapshot / "clipcap.pt")
    assert resolved.config.clipcap.gpt_dir == str(gpt_snapshot)
    batch = [regions(1, "a.png", 3, seed=4)]
    assert build_captioner(by_name).caption(batch) == build_captioner(on_disk).caption(batch)
    provenance = captioner_provenance(resolved)
    assert provenance["sha256"] == captioner_provenance(resolve_captioner(on_disk))["sha256"]
    files = {Path(entry["path"]).name: entry for entry in provenance["files"]}
    assert files["clipcap.pt"] == {"path": str(weights_snapshot / "clipcap.pt"), "repo_id": weights_repo,
                                   "revision": weights_snapshot.name,
                                   "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    assert files["config.json"]["repo_id"] == gpt_repo and files["config.json"]["revision"] == gpt_snapshot.name


def test_blip2_by_repo_id_loads_its_snapshot(blip2_setup):
    model_dir, image_root = blip2_setup
    repo = new_repo_id("blip2")
    snapshot = add_commit(repo, model_dir)
    section = Blip2Section(model_dir=repo, image_root=str(image_root), max_new_tokens=3)
    resolved = resolve_captioner(CaptionerSection(name="blip2", blip2=section))
    assert resolved.config.blip2.model_dir == str(snapshot) and resolved.models[0].revision == snapshot.name
    captioner = build_captioner(CaptionerSection(name="blip2", blip2=section))
    assert len(captioner.caption([regions(1, "a.png", 2)])[0]) == 2


def test_a_captioner_missing_from_the_cache_names_the_key_and_the_cache(clipcap_files):
    absent = new_repo_id("absent-gpt2")
    with pytest.raises(FileNotFoundError, match="captioner.clipcap.gpt_dir") as missing:
        resolve_captioner(CaptionerSection(name="clipcap", clipcap=ClipCapSection(
            checkpoint=str(clipcap_files[0]), gpt_dir=absent)))
    assert constants.HF_HUB_CACHE in str(missing.value)


def test_the_shipped_config_gives_our_teacher_the_stored_unit_vectors_as_before(tmp):
    """Our ClipCap teacher's manifest, beside its weights, says it was trained on unit-length prefixes, and
    configs/shapes/pseudo_labels.yaml leaves the convention to that record: the teacher gets the stored embeddings
    untouched, exactly what it got before the store kept norms, so its captions cannot change."""
    from schemas.config import load_config
    from pipelines.pseudo_labels_config import PseudoLabelsConfig
    from vlm.clipcap import ClipCapCaptioner

    teacher = Path(__file__).resolve().parents[2] / "assets" / "teachers" / "clipcap"
    shipped = load_config(PseudoLabelsConfig, Path(__file__).resolve().parents[2] / "configs" / "shapes" / "pseudo_labels.yaml",
                          [f"captioner.clipcap.checkpoint={teacher / 'clipcap_mlp.pt'}",
                           f"captioner.clipcap.gpt_dir={teacher / 'gpt2'}", "captioner.clipcap.max_tokens=8"])
    captioner = build_captioner(shipped.captioner)
    assert captioner.unit_prefix
    rng = np.random.default_rng(5)
    embeddings = rng.standard_normal((4, captioner.captioner.model.config.prefix_size)).astype(np.float32)
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float16)
    item = ImageRegions(1, "a.png", (0, 1, 2, 3), np.zeros((4, 4), np.float32), embeddings.astype(np.float32),
                        np.full(4, 7.5, np.float32))
    before = ClipCapCaptioner.from_paths(teacher / "clipcap_mlp.pt", teacher / "gpt2").caption(
        torch.from_numpy(embeddings.astype(np.float32)), method="beam", beam_size=5, max_tokens=8)
    assert captioner.caption([item]) == [before]


def write_teacher_record(root: Path, checkpoint: Path, normalize_prefix: bool) -> Path:
    """A teachers MANIFEST.json in `root` whose clipcap entry lists `checkpoint` (shapesov.teachers.build's keys)."""
    from shapesov.teachers.manifest import file_hashes, write_manifest

    return write_manifest(root, {"teachers": {"clipcap": {
        "checkpoint": checkpoint.relative_to(root).as_posix(), "files": file_hashes(root, [checkpoint]),
        "normalize_prefix": normalize_prefix, "mapping_type": "mlp"}}})


def clipcap_of(checkpoint: Path, gpt_dir: Path, **section):
    return build_captioner(CaptionerSection(name="clipcap", clipcap=ClipCapSection(
        checkpoint=str(checkpoint), gpt_dir=str(gpt_dir), **section)))


def test_an_official_checkpoint_without_a_record_gets_the_official_convention_of_its_mapper(tmp):
    """What a user gets who swaps an official MLP checkpoint into the shipped config: the raw encode_image output
    (embedding × norm), not the unit vectors our teacher was trained on."""
    from schemas.config import load_config
    from pipelines.pseudo_labels_config import PseudoLabelsConfig

    checkpoint, gpt_dir = write_tiny_clipcap(tmp / "official")
    shipped = load_config(PseudoLabelsConfig, Path(__file__).resolve().parents[2] / "configs/shapes/pseudo_labels.yaml",
                          [f"captioner.clipcap.checkpoint={checkpoint}", f"captioner.clipcap.gpt_dir={gpt_dir}"])
    assert shipped.captioner.clipcap.normalize_prefix is None
    assert build_captioner(shipped.captioner).unit_prefix is False
    # Without a dataset pass asked for, the score keeps HD-OVD's released μ 0.31, σ 0.026.
    assert (PseudoLabelsConfig().score.from_dataset, PseudoLabelsConfig().score.mu,
            PseudoLabelsConfig().score.sigma) == (False, 0.31, 0.026)


def test_a_record_beside_the_weights_decides_and_a_contradicting_override_is_refused(tmp):
    root = tmp / "recorded"
    files = write_tiny_clipcap(root / "clipcap")
    assert clipcap_of(*files).unit_prefix is False  # no record yet: the official MLP convention
    record = write_teacher_record(root, files[0], normalize_prefix=True)
    assert clipcap_of(*files).unit_prefix is True
    with pytest.raises(ValueError, match=r"captioner.clipcap.normalize_prefix=false contradicts .*normalize_prefix: "
                                         rf"true in {record}"):
        clipcap_of(*files, normalize_prefix=False)
    assert clipcap_of(*files, normalize_prefix=True).unit_prefix is True


def test_a_checkpoint_copied_over_a_recorded_one_is_not_covered_by_the_record(tmp):
    root = tmp / "overwritten"
    checkpoint, _ = write_tiny_clipcap(root / "clipcap")
    write_teacher_record(root, checkpoint, normalize_prefix=True)
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # another file now: its sha256 no longer matches
    from vlm.clipcap import recorded_normalize_prefix

    assert recorded_normalize_prefix(checkpoint) == (None, None)
