"""What `export-hdovd` writes and which key of HD-OVD's official configs reads each file.

OUT/features/<name>.pth    per image, <name> = the image file name without folders and without its last 4 characters
OUT/proposals.pkl          one (N, 5) float32 array x0, y0, x1, y1, score per image of the annotation file, in its order:
                           the image's proposals that have a pseudo label
OUT/class_embeddings.pt    (C, D) float32 class text embeddings in the label order of the annotation file
OUT/object_embedding.pt    (1, D) float32 text embedding of "object"
OUT/annotations.json       only with --restrict-annotations: the annotation file without the images the store lacks
OUT/export.json            what was exported from what (store, annotation file and its sha256, counts)

Facts from the official code (iSEE-Laboratory/HD-OVD, mmdet 2.x), restated in our words: the RoI heads
(StandardRoIHead, AdaMixerDecoderPrompt) load `pre_extracted_clip_text_feat + name + '.pth'` for every training
image, with name = `ori_filename.split('/')[-1][:-4]`, and read the four FEATURE_KEYS unconditionally. They mask the
image's pseudo boxes (its proposals after LoadProposals and Resize) by width and height > 32 and keep the first
`max_pseudo_box_num`, and index the proposal image and text embeddings with that same mask; LoadProposals turns an
image without proposals into one box [0, 0, 0, 0], so the mask then has one entry and the .pth needs one row.
"""
from __future__ import annotations

import io

import numpy as np

FEATURES_DIR = "features"
PROPOSALS = "proposals.pkl"
CLASS_EMBEDDINGS = "class_embeddings.pt"
OBJECT_EMBEDDING = "object_embedding.pt"
RESTRICTED_ANNOTATIONS = "annotations.json"
EXPORT_RECORD = "export.json"

FULL_IMAGE = "clip_full_image_embedding"  # (1, D)
GT = "gt_clip_image_embedding"  # (#GT rows, D), in the order of the image's GT rows (official_view)
PROPOSAL_IMAGE = "proposal_clip_image_embedding"  # (max(#proposals, 1), D), rows of proposals.pkl
PROPOSAL_TEXT = "proposal_clip_text_embedding"  # (max(#proposals, 1), D), pseudo-label text embedding of each
FEATURE_KEYS = (FULL_IMAGE, GT, PROPOSAL_IMAGE, PROPOSAL_TEXT)

# The word whose text embedding AdaMixer's objectness head compares every location with (its config:
# rpn_head.clip_obj_embedding_file, HD-OVD ships it as obj_detpro_category_embeddings_vit-b-32.pt).
OBJECT_TEXT = "object"

# Protocol 4 keeps numpy arrays in-band, so restricted unpicklers (ours, pipelines/safe_pickle.py) read the file.
PICKLE_PROTOCOL = 4

# Output → the key of HD-OVD's official configs (configs/myovd/ov_coco/*.py) that reads it; docs/official-trainer.md's table.
CONFIG_KEYS = {
    f"{FEATURES_DIR}/": "model.roi_head.pre_extracted_clip_text_feat (keep the trailing /: the path is concatenated)",
    PROPOSALS: "data.train.proposal_file",
    CLASS_EMBEDDINGS: "model.embedding_file",
    OBJECT_EMBEDDING: "model.rpn_head.clip_obj_embedding_file (AdaMixer configs)",
    RESTRICTED_ANNOTATIONS: "data.train.ann_file (with --restrict-annotations; else the file given as --annotations)",
}


def feature_file_name(file_name: str) -> str:
    """The .pth name HD-OVD's RoI heads load for an image: last path part minus its last 4 characters (".jpg",
    but also the "peg" of ".jpeg": `a.jpeg` → `a..pth`), plus ".pth"."""
    return file_name.split("/")[-1][:-4] + ".pth"


def feature_payload(image_vector: np.ndarray, gt_vectors: np.ndarray, proposal_vectors: np.ndarray,
                    text_vectors: np.ndarray) -> dict:
    """The dict of one .pth, float32 tensors.

    image_vector: (D,); gt_vectors: (G, D) in GT-row order; proposal_vectors, text_vectors: (P, D) in proposals.pkl
    order (the labelled proposals only: export_hdovd leaves the others out). P = 0 gets one zero row in both proposal
    tensors: the row LoadProposals' [0, 0, 0, 0] box stands for (its width 0 fails the > 32 mask, so it is never used).
    """
    import torch

    dim = image_vector.shape[-1]
    if len(proposal_vectors) == 0:
        proposal_vectors = text_vectors = np.zeros((1, dim), dtype=np.float32)

    def tensor(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, dim))

    return {FULL_IMAGE: tensor(image_vector), GT: tensor(gt_vectors), PROPOSAL_IMAGE: tensor(proposal_vectors),
            PROPOSAL_TEXT: tensor(text_vectors)}


def tensor_bytes(payload) -> bytes:
    """torch.save of `payload` (tensors, or a dict of tensors) into bytes, for an atomic write."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
