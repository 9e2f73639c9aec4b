"""Open-Det (papers/open-det.txt): open-ended detection that names objects without a vocabulary.

config.py            OpenDetLossConfig, every loss and component behind a switch (paper Tables 3–5 are configs)
losses.py            Masked Alignment Loss (eq. 3), Joint Loss (eq. 4), VLD-M cosine distillation (eq. 7)
alignment.py         BVLA-M, the bidirectional vision-language alignment score (Sec. 3.3, eq. 2)
detector_config.py   QueryDetectorConfig; detector.py, transformer.py: the DETR-like detector (Sec. 3.2)
matching.py          Hungarian matching on GIoU, L1 and alignment score, one-to-one and one-to-many
prompt_distiller.py  VLD-M: queries → VL-prompts in the text width (Sec. 3.4)
name_generator.py    T5 with a LoRA head and text denoising (Sec. 3.5); name_tokenizer.py: offline word tokenizer
criterion.py         all training losses of a batch, layer by layer (A.5, eq. 5–9)
opendet_config.py    OpenDetConfig (detector, loss, name generator) and NameGeneratorConfig, free of heavy imports
model.py             OpenDetModel (detector + aligner + distiller + name generator)
"""
