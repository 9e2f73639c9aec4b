"""The CLI on a real store: readable for people, JSON for scripts."""
import json

from featurestore.cli import main
from tests.featurestore.store_factory import IMAGES_PER_SHARD, REGIONS_PER_IMAGE, write_store


def test_inspect_prints_a_readable_summary(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert main(["inspect", str(root), "--schema"]) == 0
    out = capsys.readouterr().out
    for expected in ("regions", "pseudo_labels", "extract_features", "hash-extract", "truncated_image",
                     "embedding: fixed_size_list<element: halffloat>[16]"):
        assert expected in out, expected


def test_inspect_json(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert main(["inspect", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tables"]["regions"]["rows"] == 2 * IMAGES_PER_SHARD * REGIONS_PER_IMAGE
    assert summary["failures"] == {"extract_features/truncated_image": 2}
    assert summary["wds"]["shards"] == 2


def test_sql_has_one_view_per_table(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    query = ("SELECT r.source, count(*) AS n, count(p.label) AS labelled FROM regions r "
             "LEFT JOIN pseudo_labels p USING (image_id, region_id) GROUP BY 1 ORDER BY 1")
    assert main(["sql", str(root), query, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"source": "gt", "n": 6, "labelled": 0}, {"source": "image", "n": 6, "labelled": 0},
                    {"source": "proposal", "n": 12, "labelled": 12}]


def test_sql_error_is_reported(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert main(["sql", str(root), "SELECT nope FROM regions"]) == 2
    assert "error" in capsys.readouterr().out


def test_head(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert main(["head", str(root), "regions", "-n", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["embedding"].startswith("[16]")


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none")]) == 2
    assert "is not a feature store" in capsys.readouterr().out


def test_inspect_counts_crops_that_are_the_whole_image_or_cut_at_the_border(tmp_path, capsys, monkeypatch):
    """Image 64 x 48, square crops: a 40 x 40 box asks for a 113-pixel square (whole image, cut), a 10 x 12 box
    gets a window of its own. The first proposal of every image is made that large, and its stored window is
    the whole image, as extract-features cuts it."""
    import tests.featurestore.store_factory as factory

    original = factory.shard_tables

    def with_large_proposals(shard, dim=factory.DIM):
        tables = original(shard, dim)
        regions = tables["regions"]
        for row, region in enumerate(regions["region_id"]):
            if region == 1:  # the first proposal of each image
                regions["box"][row] = [2.0, 2.0, 42.0, 42.0]
                regions["crop_box"][row] = [0.0, 0.0, 64.0, 48.0]
        return tables

    monkeypatch.setattr(factory, "shard_tables", with_large_proposals)
    root = write_store(tmp_path / "store")
    assert main(["inspect", str(root), "--json"]) == 0
    census = json.loads(capsys.readouterr().out)["crops"]
    images = 2 * IMAGES_PER_SHARD
    assert census["by_source"] == {"gt": {"crops": images, "whole_image": 0, "clipped": 0},
                                   "proposal": {"crops": 2 * images, "whole_image": images, "clipped": images}}
    assert census["pseudo_boxes"] == {"crops": 2 * images, "whole_image": images, "clipped": images}
    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert "crops (square, no cap (crop.square_max_area)): the whole image / cut at the border" in out
    assert f"proposal               {images} / {images} of {2 * images}" in out


def test_sql_says_when_it_shows_only_the_first_rows(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    assert main(["sql", str(root), "SELECT region_id FROM regions", "--max-rows", "5"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 + 5 and "the first 5 rows only" in captured.err
    assert main(["sql", str(root), "SELECT region_id FROM regions", "--max-rows", "0", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2 * IMAGES_PER_SHARD * REGIONS_PER_IMAGE and not captured.err


def test_every_verb_that_writes_takes_out_and_its_old_spellings(tmp_path, capsys):
    root = write_store(tmp_path / "store")
    for argv in (["export-coco", str(root), "--out", str(tmp_path / "a.json")],
                 ["export-coco", str(root), str(tmp_path / "b.json")],  # the older positional OUT
                 ["export-coco", str(root), "-o", str(tmp_path / "c.json")]):
        assert main(argv) == 0
        assert capsys.readouterr().out.startswith(f"wrote {argv[-1]}: 6 images, 12 pseudo boxes")
    assert main(["export-coco", str(root), str(tmp_path / "d.json"), "--out", str(tmp_path / "e.json")]) == 2
    assert "two output paths given" in capsys.readouterr().out
    assert main(["export-coco", str(root)]) == 2
    assert "give the output path once: --out PATH" in capsys.readouterr().out


def test_a_command_loads_only_the_libraries_it_uses(tmp_path):
    """`inspect` needs neither torch (export-hdovd, search), DuckDB (sql) nor faiss (labels, search): a fresh
    interpreter that runs it has not imported them, and every command is still listed in the help."""
    import subprocess
    import sys
    root = write_store(tmp_path / "store")
    probe = ("import sys; from featurestore.cli import main; code = main(['inspect', sys.argv[1]]); "
             "print(sorted(m for m in ('torch', 'duckdb', 'faiss') if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    listed = subprocess.run([sys.executable, "-m", "featurestore", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0 and all(name in listed.stdout for name in ("export-hdovd", "search", "sql"))
