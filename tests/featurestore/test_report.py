"""`featurestore report` on a store labelled by the real pseudo-labels job, opened in a real headless Chromium: the
page renders, every image loads, and the precision it shows is the one pycocotools' IoU gives."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from featurestore.cli import main
from featurestore.reader import StoreReader
from tests.browser import HeadlessChromium
from tests.featurestore.labelled_store import EXPECTED_PRECISION, write_ground_truth, write_labelled_store
from tests.featurestore.store_factory import write_store

IMAGES = ("Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
          "loaded: i.complete && i.naturalWidth > 0}))")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_labelled_store(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def ground_truth(store, tmp_path_factory):
    return write_ground_truth(store, tmp_path_factory.mktemp("gt"))


@pytest.fixture(scope="module")
def report(store, ground_truth, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report"
    base, held_out = ground_truth
    assert main(["report", str(store.root), "--out", str(out), "--base-gt", str(base), "--heldout-gt",
                 str(held_out)]) == 0
    return out


def precision_by_pycocotools(store, files) -> float:
    """Share of labelled pseudo boxes with IoU >= 0.5 to any GT box, IoU from pycocotools (xywh boxes)."""
    truth: dict[int, list] = {}
    for path in files:
        for a in json.loads(path.read_text())["annotations"]:
            truth.setdefault(a["image_id"], []).append(a["bbox"])
    reader = StoreReader(store.root)
    boxes = {(r["image_id"], r["region_id"]): r["box"] for r in reader.read_table("regions").to_pylist()}
    covering = judged = 0
    for row in reader.read_table("pseudo_labels", ["image_id", "region_id", "label"]).to_pylist():
        if row["label"] is None:
            continue  # the caption named no object: not a labelled pseudo box
        x0, y0, x1, y1 = boxes[(row["image_id"], row["region_id"])]
        ious = coco_mask.iou([[x0, y0, x1 - x0, y1 - y0]], truth[row["image_id"]], [0] * len(truth[row["image_id"]]))
        judged += 1
        covering += bool(np.max(ious) >= 0.5)
    return covering / judged


@pytest.mark.slow
def test_the_page_renders_in_chromium_with_every_crop(report, store, ground_truth, tmp_path):
    data = json.loads((report / "report.json").read_text())
    crops = sorted(p.relative_to(report).as_posix() for p in (report / "crops").glob("*.png"))
    shown = sorted(e["thumb"] for rows in data["labels"]["examples"].values() for e in rows)
    assert crops == shown and len(crops) == 10  # every labelled box of this small store, one thumbnail each
    with HeadlessChromium() as browser:
        browser.open(report / "index.html")
        images = browser.evaluate(IMAGES)
        assert sorted(i["src"] for i in images) == crops and all(i["loaded"] for i in images)
        assert browser.evaluate("document.querySelectorAll('section').length") == 8
        # Timings and throughput of pseudo-labels (this extract stage was committed without stats) and the scores.
        assert browser.evaluate("document.querySelectorAll('svg.plot').length") == 3
        assert browser.evaluate("document.querySelectorAll('.grid figure').length") == 10
        quality = browser.evaluate("document.getElementById('quality').innerText")
        assert "Precision: 50.0% of 10 judged pseudo boxes" in quality and "heldout.json" in quality
        assert "No object: 1 judged pseudo boxes whose caption names no object (no label, weight 0); 1 of them " \
               "cover an object" in quality
        assert "No object: 1 pseudo boxes whose caption names no object" in browser.evaluate(
            "document.getElementById('vocabulary').innerText")
        # Nothing is fetched from anywhere but the report's own folder.
        sources = browser.evaluate("Array.from(document.querySelectorAll('[src],[href]')).map("
                                   "e => e.getAttribute('src') || e.getAttribute('href'))")
        assert all(s.startswith("#") or s.startswith("crops/") for s in sources)
        shot = browser.screenshot(tmp_path / "report.png")
    page = np.asarray(Image.open(shot).convert("RGB"))
    assert page.shape[1] == 1280 and page.shape[0] > 2000
    assert (np.abs(page.astype(int) - 255).sum(axis=2) > 60).mean() > 0.02  # text, plots and crops, not a blank
    assert data["labels"]["quality"]["precision"] == pytest.approx(
        precision_by_pycocotools(store, ground_truth)) == EXPECTED_PRECISION


@pytest.mark.slow
def test_a_missing_thumbnail_is_seen_by_the_browser(report, tmp_path):
    copy = shutil.copytree(report, tmp_path / "copy")
    gone = sorted((copy / "crops").glob("*.png"))[0]
    gone.unlink()
    with HeadlessChromium() as browser:
        browser.open(copy / "index.html")
        broken = [i["src"] for i in browser.evaluate(IMAGES) if not i["loaded"]]
    assert broken == [f"crops/{gone.name}"]


def test_report_json_has_every_section(report):
    data = json.loads((report / "report.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["extract_features", "pseudo_labels"]
    timings = {t["stage"]: t for t in data["timings"]}
    assert timings["pseudo_labels"]["items"] == 12 and len(timings["pseudo_labels"]["shards"]) == 2
    assert {(f["stage"], f["kind"]): f["count"] for f in data["failures"]} == {("pseudo_labels", "empty_caption"): 1}
    labels = data["labels"]
    assert {r["label"]: r["boxes"] for r in labels["vocabulary"]["top_labels"]} == {"heart": 4, "star": 4,
                                                                                     "circle": 2}
    assert sum(sum(c) for c in labels["score_histogram"]["counts"].values()) == 10
    quality = labels["quality"]
    assert quality["per_class"] == {"star": {"split": "novel", "covering": 5, "correct": 4, "accuracy": 0.8,
                                             "no_object": 1}}
    assert (labels["vocabulary"]["no_object"], quality["no_object_judged"], quality["no_object_covering"]) == (1, 1, 1)
    assert {r["label"]: r["boxes"] for r in quality["labels_on_nothing"]} == {"heart": 3, "circle": 2}
    star = labels["examples"]["star"][0]
    assert star["covers"] == "star" and star["iou"] == pytest.approx(1.0) and star["candidates"] == [
        "red star", "star", "wall"]


def test_without_ground_truth_the_page_says_so(store, tmp_path):
    out = tmp_path / "plain"
    assert main(["report", str(store.root), "--out", str(out), "--crops-per-label", "1"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["labels"]["quality"] is None and len(list((out / "crops").iterdir())) == 3
    assert "No held-out ground truth was given" in (out / "index.html").read_text()


def test_out_must_be_a_report_folder_and_is_replaced_whole(store, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["report", str(store.root), "--out", str(other)]) == 2
    assert "not a report folder" in capsys.readouterr().out and (other / "keep.txt").read_text() == "mine"
    out = tmp_path / "again"
    assert main(["report", str(store.root), "--out", str(out)]) == 0
    (out / "crops" / "stale.png").write_bytes(b"old")
    assert main(["report", str(store.root), "--out", str(out), "--labels", "1"]) == 0
    assert not (out / "crops" / "stale.png").exists() and len(list((out / "crops").iterdir())) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_a_store_without_pseudo_labels_gets_the_store_sections(tmp_path):
    root = write_store(tmp_path / "bare", with_pseudo_labels=False)
    out = tmp_path / "bare-report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "The store has no pseudo labels yet" in page and 'id="grids"' not in page
    data = json.loads((out / "report.json").read_text())
    # store_factory files one truncated image per shard; both shards committed stats with their image counts.
    assert data["failures"] == [{"stage": "extract_features", "kind": "truncated_image", "count": 2, "examples": [
        {"stage": "extract_features", "kind": "truncated_image", "image_id": i, "region_id": None,
         "file_name": "broken.jpg", "message": "broken.jpg: image file is truncated"} for i in (1000, 2000)]}]
    assert "labels" not in data
