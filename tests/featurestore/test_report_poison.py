"""The report's crop reader on hostile image files: a decompression bomb and a file replaced by another format are
a problem cell of their crops, never the end of `featurestore report`."""
import json
import shutil

from featurestore.cli import main
from tests.featurestore.labelled_store import write_labelled_store
from tests.vlm.poison_images import jpeg_claiming, png_claiming


def test_a_bomb_among_the_images_is_a_problem_cell_not_a_crash(tmp_path):
    store = write_labelled_store(tmp_path / "labelled")
    images = tmp_path / "hostile-images"
    shutil.copytree(store.image_root, images)
    first, second = store.image_ids[0][0], store.image_ids[1][0]
    (images / f"{first:04d}.png").write_bytes(png_claiming(60000, 60000))  # above PIL's own refusal
    (images / f"{second:04d}.png").write_bytes(jpeg_claiming(13370, 13370))  # under it: PIL alone would decode it
    out = tmp_path / "report"
    assert main(["report", str(store.root), "--out", str(out), "--image-root", str(images)]) == 0
    examples = [e for rows in json.loads((out / "report.json").read_text())["labels"]["examples"].values()
                for e in rows]
    problems = {e["image_id"]: e["problem"] for e in examples if e["image_id"] in (first, second)}
    assert problems and all("not decoded" in problem for problem in problems.values()), problems
    assert any(e["thumb"] for e in examples if e["image_id"] not in (first, second))  # the other crops are drawn
