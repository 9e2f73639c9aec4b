"""The demo's HD-OVD + Open-Det tables: rows labelled from each Open-Det run's config, per-class name rates side by
side."""
import json

from trainers.demo_report import demo_rows, format_rows, main, name_rate_rows, size_rate_rows

NAME_TABLE = [{"category": "circle", "split": "base", "found": 10, "right": 9, "right_rate": 0.9,
               "joined_right": 7, "joined_right_rate": 0.7, "top_names": ["circle", "square"]},
              {"category": "star", "split": "novel", "found": 4, "right": 0, "right_rate": 0.0, "top_names": ["cross"]}]


def opendet_run(pseudo_names, mapping="released", novel=0.0):
    return {"metrics": {"AP50_all": 0.5, "AP50_base": 0.6, "AP50_novel": None, "name_right_base": 0.8125,
                        "name_right_novel": novel, "joined_beams_right_base": 0.5625,
                        "joined_beams_right_novel": None},
            "name_table": [dict(row, right_rate=novel if row["split"] == "novel" else row["right_rate"])
                           for row in NAME_TABLE],
            "name_size_table": [{"size": "small", "split": "base", "found": 4, "right": 3, "right_rate": 0.75},
                                {"size": "medium", "split": "novel", "found": 4, "right": 0, "right_rate": novel}],
            "config": {"opendet": {"loss": {"pseudo_names": pseudo_names}, "inference": {"mapping": mapping}}}}


def test_rows_put_open_det_runs_beside_the_table5_rows():
    table5 = {"base_only": {"metrics": {"AP50_all": 0.75, "AP50_base": 0.985, "AP50_novel": 0.058}}}
    rows = demo_rows(table5, [opendet_run(False), opendet_run(True, novel=0.75), opendet_run(True, "softmax")])
    assert rows[0] == ["HD-OVD base_only", "class names", "75.0", "98.5", "5.8", "", "", "", ""]
    assert rows[1] == ["Open-Det", "none (names generated)", "50.0", "60.0", "n/a", "81.2", "0.0", "56.2", "n/a"]
    assert rows[2][0] == "Open-Det + pseudo names" and rows[2][6] == "75.0"
    assert rows[3][0] == "Open-Det + pseudo names (softmax mapping)"
    assert format_rows(rows).count("\n") == 5  # header, rule, four rows


def test_name_rates_per_class_side_by_side():
    headers, rows = name_rate_rows([opendet_run(False), opendet_run(True, novel=0.75)])
    assert headers[:2] == ("category", "split") and headers[6] == "Open-Det + pseudo names: found"
    assert rows[0] == ["circle", "base", "10", "90.0%", "70.0%", "circle, square",
                       "10", "90.0%", "70.0%", "circle, square"]
    assert rows[1][:5] == ["star", "novel", "4", "0.0%", "n/a"] and rows[1][7] == "75.0%"


def test_size_rates_side_by_side():
    headers, rows = size_rate_rows([opendet_run(False), opendet_run(True, novel=0.75)])
    assert headers == ("object size (COCO)", "split", "Open-Det: found", "Open-Det: name right",
                       "Open-Det + pseudo names: found", "Open-Det + pseudo names: name right")
    assert rows == [["small", "base", "4", "75.0%", "4", "75.0%"], ["medium", "novel", "4", "0.0%", "4", "75.0%"]]


def test_main_writes_both_tables(tmp_path, capsys):
    table5, first, second = tmp_path / "table5.json", tmp_path / "a.json", tmp_path / "b.json"
    table5.write_text(json.dumps({"hdovd": {"metrics": {"AP50_all": 0.9}}}))
    first.write_text(json.dumps(opendet_run(False)))
    second.write_text(json.dumps(opendet_run(True)))
    out = tmp_path / "demo.md"
    assert main(["--table5", str(table5), "--opendet", str(first), "--opendet", str(second), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| Open-Det + pseudo names | none (names generated) |" in text and "| star | novel |" in text
    assert "| small | base | 4 | 75.0% |" in text


def test_missing_results_name_the_file(tmp_path, capsys):
    table5 = tmp_path / "table5.json"
    table5.write_text(json.dumps({}))
    assert main(["--table5", str(table5), "--opendet", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_the_proposals_recall_closes_the_demo_table(tmp_path, capsys):
    table5, recall = tmp_path / "table5.json", tmp_path / "recall.json"
    table5.write_text(json.dumps({"base_only": {"metrics": {"AP50_all": 0.75, "AP50_base": 0.985,
                                                            "AP50_novel": 0.058}}}))
    side = {"AR@10": 0.5, "R50@10": 0.9, "AR@100": 0.6, "R50@100": 0.95, "num_gt": 7}
    recall.write_text(json.dumps({"data/store (proposals stage)": {"base": side, "novel": side}}))
    assert main(["--table5", str(table5), "--recall", str(recall)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("proposals"))
    assert lines[header].split() == ["proposals", "GT", "AR@10", "AR@100", "R50@10", "R50@100", "num_gt"]
    assert lines[header + 2].split()[-6:] == ["novel", "50.0", "60.0", "90.0", "95.0", "7"]
