"""Open-Det (papers/open-det.txt): open-ended detection that names objects without a vocabulary.

config.py      OpenDetLossConfig, every component behind a switch (paper Tables 3–5 are configs)
alignment.py   BVLA-M, the bidirectional vision-language alignment score (Sec. 3.3, eq. 2)
losses.py      Masked Alignment Loss (eq. 3), Joint Loss (eq. 4), VLD-M cosine distillation (eq. 7)
"""
