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
from collections import Counter

from featurestore.manifest import DamagedManifestError
from featurestore.reader import StoreReader
from featurestore.stages import EXTRACT_FEATURES
from pipelines.extract_config import ExtractFeaturesConfig
from vlm.clip import ClipSource, LoadedClip, load_clip
from vlm.dtype_probe import AUTO, DtypeChoice

LOG = logging.getLogger(EXTRACT_FEATURES)
KEPT = "kept from the store"  # DtypeChoice.how of a resume that keeps the committed shards' dtype


def committed_dtype(store: str) -> str | None:
    """The dtype the store's committed extract-features shards ran their image tower in (the most common one if
    they differ, as shards of stores from before this rule may), or None for a store without such shards."""
    try:
        reader = StoreReader(store, verify=False)
    except (FileNotFoundError, DamagedManifestError):
        return None  # a new store, or one the driver repairs first: nothing to keep
    seen: Counter = Counter()
    for record in reader.commits:
        if record.stage == EXTRACT_FEATURES and "stats" in record.files:
            picked = (reader.shard_stats(EXTRACT_FEATURES, record.shard).get("model_dtype") or {}).get("dtype")
            if picked:
                seen[picked] += 1
    return seen.most_common(1)[0][0] if seen else None


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
