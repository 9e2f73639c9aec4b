"""The extract-features shard as WebDataset samples: one sample per image, key = image id (no dots).

Sample members: `json` (the image row and its regions without embeddings, with each one's `embedding_norm`), `image_emb.npy` (D,) float16,
`region_emb.npy` (R, D) float16, `boxes.npy` (R, 4) float32 xyxy. Tars are written deterministically
(sorted keys, zero mtimes) so the same shard gives the same bytes.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import fsspec
import numpy as np
import pyarrow as pa

from featurestore.arrow import embeddings_to_numpy
from featurestore.regions import Regions
from featurestore.storage import is_url

NON_EMBEDDING_REGION_COLUMNS = ("region_id", "box", "source", "category_id", "proposal_score",
                                "max_iou_base", "crop_mode", "crop_box", "names", "embedding_norm")


def sample_key(image_id: int) -> str:
    return str(int(image_id))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_wds_shard(path: Path, images: pa.Table | None, regions_table: pa.Table) -> None:
    """Write one tar with a sample per image of `images` (or per image id present in the regions)."""
    Path(path).write_bytes(wds_shard_bytes(images, regions_table))


def wds_shard_bytes(images: pa.Table | None, regions_table: pa.Table) -> bytes:
    """The bytes of one tar with a sample per image of `images` (or per image id present in the regions)."""
    regions = Regions.from_arrow(regions_table)
    rows_of = regions.rows_by_image()
    region_rows = regions.to_rows(NON_EMBEDDING_REGION_COLUMNS)
    image_rows = images.drop_columns(["embedding"]).to_pylist() if images is not None else []
    image_embeddings = embeddings_to_numpy(images.column("embedding")) if images is not None else None
    order = [row["image_id"] for row in image_rows] or list(rows_of)
    by_id = {row["image_id"]: i for i, row in enumerate(image_rows)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for image_id in order:
            rows = rows_of.get(image_id, np.array([], dtype=int))
            info = dict(image_rows[by_id[image_id]]) if image_id in by_id else {"image_id": image_id}
            info["regions"] = [region_rows[i] for i in rows]
            key = sample_key(image_id)
            _add(tar, f"{key}.json", json.dumps(info, sort_keys=True).encode())
            if image_embeddings is not None and image_id in by_id:
                _add(tar, f"{key}.image_emb.npy", _npy_bytes(image_embeddings[by_id[image_id]]))
            _add(tar, f"{key}.region_emb.npy", _npy_bytes(regions.embedding[rows]))
            _add(tar, f"{key}.boxes.npy", _npy_bytes(regions.box[rows]))
    return buffer.getvalue()


def open_with_fsspec(sources: Iterable[dict]) -> Iterator[dict]:
    """webdataset pipeline stage: {"url": …} → {"url": …, "stream": …}, opened by fsspec, so `s3://`, `gs://` and
    `memory://` shards read like local ones (webdataset's own opener knows only local files, pipes and curl)."""
    for source in sources:
        yield {**source, "stream": fsspec.open(source["url"], "rb").open()}


def _decoded(sample: dict) -> dict:
    """A webdataset sample → `__key__`, `json` (parsed) and numpy arrays for `.npy` members (never pickles)."""
    out = {"__key__": sample["__key__"]}
    for name, value in sample.items():
        if name.endswith("npy"):
            out[name] = np.load(io.BytesIO(value), allow_pickle=False)
        elif name == "json":
            out[name] = json.loads(value)
    return out


def read_wds_shard(path: str | Path) -> Iterator[dict]:
    """Samples of one tar (a local path or a URL) as dicts: `__key__`, `json` (parsed), and numpy arrays for `.npy`
    members.

    Uses the `webdataset` library, so what we read is what any webdataset user reads.
    """
    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    if is_url(path):
        dataset = wds.DataPipeline(wds.SimpleShardList([str(path)]), open_with_fsspec, tar_file_expander,
                                   group_by_keys, wds.map(_decoded))
    else:
        dataset = wds.WebDataset(str(path), shardshuffle=False, empty_check=False).map(_decoded)
    yield from dataset


def read_wds_bytes(data: bytes, url: str) -> Iterator[dict]:
    """The samples of one tar already in memory (read and checked by the store reader), as `read_wds_shard` gives
    them, through the same webdataset stages; `url` is the name webdataset's errors give."""
    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    source = lambda: iter([{"url": url, "stream": io.BytesIO(data)}])  # noqa: E731 (a pipeline's first stage)
    yield from wds.DataPipeline(source, tar_file_expander, group_by_keys, wds.map(_decoded))
