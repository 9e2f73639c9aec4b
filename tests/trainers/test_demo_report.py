"""The demo's HD-OVD + Open-Det table."""
import json

from trainers.demo_report import demo_rows, format_rows, main


def test_rows_put_open_det_beside_the_table5_rows():
    table5 = {"base_only": {"metrics": {"AP50_all": 0.75, "AP50_base": 0.985, "AP50_novel": 0.058}}}
    opendet = {"metrics": {"AP50_all": 0.5, "AP50_base": 0.6, "AP50_novel": None, "name_right_base": 0.8125,
                           "name_right_novel": 0.0}}
    rows = demo_rows(table5, opendet)
    assert rows[0] == ["HD-OVD base_only", "class names", "75.0", "98.5", "5.8", "", ""]
    assert rows[1] == ["Open-Det", "none (names generated)", "50.0", "60.0", "n/a", "81.2", "0.0"]
    assert format_rows(rows).count("\n") == 3  # header, rule, two rows


def test_missing_results_name_the_file(tmp_path, capsys):
    table5 = tmp_path / "table5.json"
    table5.write_text(json.dumps({}))
    assert main(["--table5", str(table5), "--opendet", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
