"""The documentation's recipes for reading a store with Hugging Face `datasets` and Polars, run as written (in a fresh
interpreter, offline, with the recipe's store path pointed at a store written through the real ShardWriter), wherever
they live: the README or a page under docs/."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.reader import StoreReader
from tests.featurestore.store_factory import committed_file, write_store

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "<!-- recipe -->"
STORE_LINE = 'STORE = pathlib.Path("data/store")'


def recipes() -> list[str]:
    """The python blocks that follow a recipe marker, page by page, in page order."""
    return [block for page in PAGES
            for block in re.findall(re.escape(MARKER) + r"\n```python\n(.*?)```", page.read_text(), flags=re.S)]


@pytest.mark.slow
def test_the_recipes_read_exactly_the_committed_rows(tmp_path):
    store = write_store(tmp_path / "store")
    # The leftover of an interrupted write: a glob would read it, the recipe must not.
    (store / "regions" / "00007-0123456789ab.parquet").write_bytes(committed_file(store, "regions", 0).read_bytes())
    blocks = recipes()
    assert len(blocks) == 2 and STORE_LINE in blocks[0]
    script = "\n".join(blocks).replace(STORE_LINE, f"STORE = pathlib.Path({str(store)!r})")
    script += ("\nprint('RESULT', json.dumps({'regions': len(regions), 'dim': int(regions[0]['embedding'].shape[0]),"
               " 'per_label': per_label.rows()}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
           "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    reader = StoreReader(store)
    labels = reader.read_table("pseudo_labels")
    assert result["regions"] == reader.read_table("regions").num_rows == 24
    assert result["dim"] == 16
    assert [[label, boxes] for label, boxes, _ in result["per_label"]] == [["star", labels.num_rows]]
    assert abs(result["per_label"][0][2] - 0.875) < 1e-6
