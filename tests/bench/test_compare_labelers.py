"""docs/labelers.md as bench/compare_labelers.py writes it: the table with the bar's verdict per vlm prompt, a
labeler over the failure-rate gate marked, and the hand-written notes below the marker kept across runs."""
from __future__ import annotations

from bench.compare_labelers import NOTES_MARKER, markdown, write_page

MACHINE = {"cpu_model": "x86-64", "nproc": 2, "torch_threads": 1, "load_average_1min": 1.0}


def result(novel_correct: int, novel_covering: int, over_gate: bool = False) -> dict:
    return {"settings": [], "over_failure_rate": over_gate, "pseudo_boxes": 100, "labelled": 90,
            "failures_by_kind": {}, "candidates_per_labelled_box": 1.5, "no_object": 10, "no_object_covering": 2,
            "precision": 0.8, "covering": 72, "correct": 60, "accuracy": 60 / 72, "novel_covering": novel_covering,
            "novel_correct": novel_correct, "novel_accuracy": novel_correct / novel_covering, "caption_seconds": 4.0,
            "wall_seconds": 20.0, "boxes_per_model_second": 25.0, "boxes_per_wall_second": 5.0}


def test_the_table_states_the_bar_for_each_vlm_prompt():
    page = markdown({"clipcap": result(30, 40), "vlm, crop prompt": result(31, 40),
                     "vlm, box prompt": result(20, 40, over_gate=True)}, "python -m bench.compare_labelers", MACHINE,
                    None)
    assert "- the bar, vlm, crop prompt: accuracy on boxes covering a novel object 77.5% >= ClipCap's 75.0%: met" \
        in page
    assert "- the bar, vlm, box prompt: accuracy on boxes covering a novel object 50.0% >= ClipCap's 75.0%: " \
           "**not met**" in page
    box_row = next(line for line in page.splitlines() if line.startswith("| vlm, box prompt |"))
    assert "90.0% (over runtime.max_failure_rate)" in box_row and "| 10 (2) |" in box_row
    assert "**50.0%** (20 / 40)" in box_row


def test_a_new_table_keeps_the_notes_below_the_marker(tmp_path):
    doc = tmp_path / "labelers.md"
    write_page(doc, "# first table\n")
    assert doc.read_text() == f"# first table\n\n{NOTES_MARKER}\n"
    doc.write_text(doc.read_text() + "\n## Notes\n\nwritten by hand\n")
    write_page(doc, "# second table\n")
    assert doc.read_text() == f"# second table\n\n{NOTES_MARKER}\n\n## Notes\n\nwritten by hand\n"
