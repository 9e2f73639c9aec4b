"""model.dtype auto, settled once per job by its driver before any shard fingerprint is computed.

A store's embeddings should come from one dtype, and a shard's fingerprint should say which: a store resumed on
another machine, or written by workers whose probes disagree (fp32 and bf16 can run within noise of each other),
would otherwise mix the two under one fingerprint. So the driver, which loads the model anyway to embed the vocab,
settles `auto` and the job then runs exactly as if that dtype had been given (the same fingerprints, the same vocab
rows, workers load that dtype without a probe):

- a store that already holds shards of this stage keeps the dtype they were computed in (a resume never mixes);
- otherwise on a GPU bf16, and on a CPU the faster of fp32 and bf16 as a short timed probe of the image tower finds
  on this machine (vlm.dtype_probe), which is the workers' machine for the in-process and local runners. With a
  runner whose workers are other machines, give model.dtype explicitly.

The choice, with the probe's two rates or where it came from, goes into the stage's summary in the manifest.
"""
from __future__ import annotations

import dataclasses
import logging

from featurestore.manifest import DamagedStoreError
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from pipelines.extract_config import ExtractFeaturesConfig
from vlm.clip import ClipSource, LoadedClip, load_clip
from vlm.dtype_probe import AUTO, DtypeChoice

LOG = logging.getLogger(EXTRACT_FEATURES)
KEPT = "kept from the store"  # DtypeChoice.how of a resume that keeps the committed shards' dtype


def committed_dtype(store: str) -> str | None:
    """The dtype the store's committed extract-features shards ran their image tower in, from the first shard whose
    stats say (one stats file read, not one per shard: under this rule a store's shards share one dtype), or None for
    a store without such shards."""
    try:
        reader = StoreReader(store)
    except (FileNotFoundError, DamagedStoreError):
        return None  # a new store, or one the driver repairs first: nothing to keep
    for record in sorted(reader.commits, key=lambda record: record.shard):
        if record.stage == EXTRACT_FEATURES and "stats" in record.files:
            try:
                stats = reader.shard_stats(EXTRACT_FEATURES, record.shard)
            except (FileNotFoundError, DamagedStoreError, ValueError):
                continue  # a damaged shard: the driver recomputes it; the next one says
            picked = (stats.get("model_dtype") or {}).get("dtype")
            if picked:
                return picked
    return None


def load_for_job(source: ClipSource, config: ExtractFeaturesConfig, store: str, overwrite: bool
                 ) -> tuple[ExtractFeaturesConfig, LoadedClip]:
    """The model the driver embeds the vocab with, and the config the job runs: model.dtype auto replaced by the
    dtype settled here (its DtypeChoice is the loaded model's `dtype_choice`); any other dtype is kept as given.
    With `overwrite` the store's shards are discarded, so there is nothing to keep."""
    if config.model.dtype != AUTO:
        return config, load_clip(source, device=config.runtime.device, dtype=config.model.dtype)
    kept = None if overwrite else committed_dtype(store)
    if kept is not None:
        clip = load_clip(source, device=config.runtime.device, dtype=kept)
        clip = dataclasses.replace(clip, dtype_choice=DtypeChoice(kept, KEPT))
        LOG.info("model.dtype auto: %s, the dtype of the shards %s already holds", kept, store)
    else:
        clip = load_clip(source, device=config.runtime.device, dtype=AUTO)
    settled = clip.dtype_choice.dtype
    return dataclasses.replace(config, model=dataclasses.replace(config.model, dtype=settled)), clip
