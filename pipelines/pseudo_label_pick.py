"""Pick one pseudo text label per region among its caption's candidates, and score how well it matches.

HD-OVD (Sec. III-C, Fig. 4): each candidate's CLIP text embedding is compared with the region's CLIP embedding by
cosine; the best candidate is the label and its cosine, standardised and squashed, weights the class-wise loss:
    score = sigmoid((cos − μ) / σ) · k
(μ, σ, k: config section `score`, pipelines/pseudo_labels_config.py.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Pick:
    """The winning candidate of one region."""

    label: str
    cos: float
    text_embedding: np.ndarray  # (D,) float32, L2-normalised


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """x: (..., D) → same shape float32 with unit rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class TextEmbeddingCache:
    """CLIP text embeddings per unique string: each label text is encoded once per process; the texts a call has
    not seen before go to `encode` together (up to `batch_size` per call: a pick batch's candidates in one call).

    `encode`: list of N strings → (N, D) float array (the prompt ensemble and its batching are the encoder's
    business: vlm.text_tower runs every prompt of the call in batches).
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], batch_size: int = 4096):
        self._encode = encode
        self._batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """texts: N strings → (N, D) float32 L2-normalised rows, encoding only strings not seen before."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), self._batch_size):
            chunk = missing[start:start + self._batch_size]
            for text, row in zip(chunk, l2_normalise(self._encode(chunk))):
                self._cache[text] = row
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def pick_labels(region_embeddings: np.ndarray, candidates: Sequence[Sequence[str]],
                cache: TextEmbeddingCache) -> list[Pick | None]:
    """The max-cosine candidate of every region, all regions in one matrix product.

    region_embeddings: (N, D) float (any norm); candidates: N lists of strings.
    Returns N picks; None where a region has no candidate.
    """
    flat = [c for row in candidates for c in row]
    if not flat:
        return [None] * len(candidates)
    unique = list(dict.fromkeys(flat))
    text = cache.embeddings(unique)  # (U, D)
    column = {t: i for i, t in enumerate(unique)}
    # In float64, rounded once to float32: a float32 product's last bits depend on the matrix shapes BLAS is
    # given (how the runner batched the regions), which made two runs over one store pick different cosines.
    cosines = (l2_normalise(region_embeddings).astype(np.float64) @ text.astype(np.float64).T).astype(np.float32)
    picks: list[Pick | None] = []
    for row, names in enumerate(candidates):
        if not names:
            picks.append(None)
            continue
        columns = [column[n] for n in names]
        best = int(np.argmax(cosines[row, columns]))  # first candidate wins ties: caption order
        picks.append(Pick(names[best], float(cosines[row, columns[best]]), text[columns[best]]))
    return picks


def match_scores(cos: np.ndarray, mu: float, sigma: float, k: float) -> np.ndarray:
    """cos: (N,) float → (N,) float32 `sigmoid((cos − μ)/σ)·k` (HD-OVD's matching score)."""
    if sigma <= 0:
        raise ValueError(f"score sigma must be > 0, got {sigma} (config key score.sigma)")
    z = (np.asarray(cos, dtype=np.float64) - mu) / sigma
    return (k / (1.0 + np.exp(-z))).astype(np.float32)
