"""Open-Det (papers/open-det.txt): open-ended detection that names objects without a vocabulary.

method.py            the engine's entry: build the model and criterion, the batch losses, evaluation
config.py            every config section: detector, losses (Tables 3–5 are settings), name generator, inference
model.py             OpenDetModel (the shared query detector + aligner + distiller + name generator)
alignment.py         BVLA-M, the bidirectional vision-language alignment score (Sec. 3.3, eq. 2)
prompt_distiller.py  VLD-M: queries → VL-prompts in the text width (Sec. 3.4)
name_generator.py    T5 with a LoRA head and text denoising (Sec. 3.5); name_tokenizer.py: offline word tokenizer
losses.py            Masked Alignment Loss (eq. 3), Joint Loss (eq. 4), VLD-M cosine distillation (eq. 7)
criterion.py         all training losses of a batch, layer by layer (A.5, eq. 5–9), on the shared box criterion
batch_losses.py      batch → named targets → model → criterion
inference.py         vocabulary-free detection and the name → category mapping; evaluate.py: AP and name table
name_encoder.py      the evaluation's text encoder; sentence_encoder.py: an offline sentence-transformers model

The DETR-like detector, matching and box losses it shares with HD-OVD live in trainers.modeling.
"""
