"""Settings of the extract-features stage (configs/shapes/extract_features.yaml): every section of it, loaded with
schemas.config. Building blocks take these sections or explicit arguments; nothing here imports them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipelines.crops import clipped_at_border, crop_window
from pipelines.runtime_section import RuntimeSection
from schemas.config import config_hash
from schemas.tables import CropMode


@dataclass(frozen=True)
class DatasetSection:
    annotations: str = "data/shapes/annotations/train_base.json"  # COCO / LVIS instances JSON
    image_root: str = "data/shapes/images/train"  # local folder or any Beam FileSystems path
    split: str = "data/shapes/ov_split.json"  # "ov-coco", "lvis-frequency" or a {"base", "novel"} JSON file
    strict: bool = True  # drop novel annotations when reading (the strict open-vocabulary setting)
    # COCO-results JSON, an mmdet-style .pkl, or "store": the proposals stage of the store this job writes (make
    # proposals; cut into the same shards, which the job checks). Empty: no proposals.
    proposals: str | None = "data/shapes/proposals/train.json"
    max_images: int = 0  # first N images by id (0 = all); for trial runs
    # Object names of GT boxes (Open-Det's targets): they fill regions.names and add one vocab row of kind "name"
    # per distinct name. `names` is a JSONL with one line per annotation, {"image_id", "ann_id", "names": [...]}
    # (pipelines/object_names.py; "a, b" lists synonyms); empty = no file. `object_names` names every GT box the
    # file does not list by its category name (COCO / LVIS names). Both unset: regions.names stays null, as it
    # always does for proposal and whole-image regions.
    names: str | None = None
    object_names: bool = False

    def __post_init__(self) -> None:
        if self.max_images < 0:
            raise ValueError(f"dataset.max_images must be >= 0 (0 = all), got {self.max_images}")

    @property
    def object_name_mode(self) -> bool:
        """Whether GT boxes get object names (regions.names, vocab rows of kind "name")."""
        return bool(self.names) or self.object_names


@dataclass(frozen=True)
class RegionsSection:
    """Thresholds of region planning (pipelines/regions.py)."""

    max_iou_base: float = 0.5  # proposals overlapping base GT more than this are base objects, not candidates
    min_proposal_side: float = 4.0  # pixels; smaller crops carry no usable signal at CLIP resolution
    # Proposals scored below this are no candidates (0: every proposal, as HD-OVD takes the top 5 whatever their
    # score). With a proposal network whose score is localization quality (OLN), a threshold keeps the boxes that
    # frame an object: on ShapesOV, 0.6 (the preset) keeps 88% of the pseudo boxes that cover an object and drops
    # 86% of those that cover none (docs/results.md).
    min_proposal_score: float = 0.0
    nms_iou: float = 0.5
    top_k: int = 5  # proposals kept per image (HD-OVD default)
    include_image: bool = True  # also store the whole image as a region (source "image")
    box_tolerance: float = 1.0  # pixels a box may overshoot the image before it counts as out_of_image

    def __post_init__(self) -> None:
        for name in ("max_iou_base", "nms_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"regions.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("min_proposal_side", "min_proposal_score", "top_k", "box_tolerance"):
            if getattr(self, name) < 0:
                raise ValueError(f"regions.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class CropSection:
    """How each region's crop window is cut (pipelines/crops.py)."""

    mode: CropMode = "square"
    context_scale: float = 1.5  # window = box scaled about its centre (mode "context")
    # Mode "square" is OADP's window, side sqrt(8 x box area); cut to the image, it is the whole image for every box
    # larger than about an eighth of it. A share of the image's area caps it (a large box then keeps a window of
    # its own, never smaller than the box); None: no cap, OADP's rule.
    square_max_area: float | None = None

    def __post_init__(self) -> None:
        if self.context_scale <= 0:
            raise ValueError(f"crop.context_scale must be > 0, got {self.context_scale}")
        if self.square_max_area is not None and not 0 < self.square_max_area <= 1:
            raise ValueError(f"crop.square_max_area must be in (0, 1] (a share of the image's area) or null, got "
                             f"{self.square_max_area}")

    def window(self, box, source: str, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop window of a region of `source` (the whole image is always cut as itself)."""
        return crop_window(box, "tight" if source == "image" else self.mode, width, height, self.context_scale,
                           self.square_max_area)

    def clipped(self, box, source: str, width: int, height: int) -> bool:
        """Whether that window was cut at the image border (pipelines.crops.clipped_at_border)."""
        return clipped_at_border(box, "tight" if source == "image" else self.mode, width, height,
                                 self.context_scale, self.square_max_area)


@dataclass(frozen=True)
class ModelSection:
    # `local-dir:<folder>`, `hf-hub:org/name` or a registered architecture name (vlm/clip.py)
    clip: str = "local-dir:data/teachers/clip"
    checkpoint: str | None = None  # with an architecture name: a weights file or an open_clip tag ("openai")
    model_config_dir: str | None = None  # folder of extra open_clip architecture JSONs
    # auto: the job's driver settles it once before any fingerprint (beam_jobs/extract_dtype.py): a store's own
    # dtype on resume, else bf16 on a GPU and on a CPU the faster of fp32 and bf16 in a timed probe
    # (vlm/dtype_probe.py); the job then runs as if that dtype were given, and the manifest records why.
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


@dataclass(frozen=True)
class VocabSection:
    prompts: Literal["single", "imagenet80"] = "imagenet80"


@dataclass(frozen=True)
class ExtractRuntimeSection(RuntimeSection):
    """The runtime keys both stages share, plus where extract-features decodes images and cuts crops. Like every
    runtime key these stay out of shard fingerprints: both paths compute the same crops (cosine >= 0.99, measured by
    tests/beam_jobs/test_extract_device_path.py)."""

    # host: PIL decodes each image and cuts its crops in the Beam worker's Python thread, each crop its own element to
    # the model (the default on a CPU). device: one element per image (its bytes and crop windows); decoding, cutting,
    # resizing and encoding happen on runtime.device (vlm/region_encoder.py). auto: device when runtime.device is (or,
    # for auto, resolves on the machine that starts the job to) a GPU; set it when only the workers have GPUs.
    crop_on: Literal["auto", "host", "device"] = "auto"
    # On the device path runtime.max_batch_size counts the crops of one forward (a chunk of whole images, an image
    # with more crops than that split across forwards) and RunInference hands over 4 forwards' worth of images at
    # once (beam_jobs/device_clip_handler.py); min_batch_size is not used there.
    # How the device path resizes crops: batched (two matmuls for every crop of a forward: GPUs), per_crop
    # (torchvision's antialiased resize, one call per crop: CPUs, where it is ~40x faster; vlm/crop_resample.py);
    # auto: batched on a GPU, per_crop on a CPU.
    crop_resize: Literal["auto", "batched", "per_crop"] = "auto"


@dataclass(frozen=True)
class ExtractFeaturesConfig:
    dataset: DatasetSection = field(default_factory=DatasetSection)
    regions: RegionsSection = field(default_factory=RegionsSection)
    crop: CropSection = field(default_factory=CropSection)
    model: ModelSection = field(default_factory=ModelSection)
    vocab: VocabSection = field(default_factory=VocabSection)
    runtime: ExtractRuntimeSection = field(default_factory=ExtractRuntimeSection)
    shard_size: int = 256  # images per input shard

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")

    def content_hash(self) -> str:
        """Hash of the settings that change what is computed: everything but `runtime`, left out altogether so a
        runtime knob added later changes no fingerprint."""
        return config_hash(dataclasses.replace(self, runtime=None))
