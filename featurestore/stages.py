"""The stages that write a store. A stage's name keys its section of manifest.json, its folder of commit records,
its stats and failures files, and the `stage` column of its failure rows."""
from __future__ import annotations

PROPOSALS = "proposals"  # proposals (class-agnostic boxes of the proposal network)
EXTRACT_FEATURES = "extract_features"  # images, regions, vocab (classes, object names), wds
PSEUDO_LABELS = "pseudo_labels"  # pseudo_labels, vocab (labels)
