"""What the ShapesOV instruction-following teacher learns from: (view, prompt, answer) examples.

Each object of freshly rendered scenes (stream `teacher_vlm`, never the detection train set) gets proposal-like
boxes; each box is shown both ways the `vlm` labeler shows a pseudo box (pipelines.region_prompts with the
labeler's default settings and templates, pipelines/pseudo_labels_config.py VlmSection): the crop with context,
and the whole image with the box drawn and its coordinates in the prompt. The answer is the object's name as a
short noun phrase, "a red star".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.captioners.vlm import region_prompt_style
from pipelines.pseudo_labels_config import VlmSection
from pipelines.region_prompts import REGION_PROMPTS, RegionPromptStyle, region_view
from shapesov.classes import SHAPE_NAMES
from shapesov.config import SceneConfig
from shapesov.scenes import Scene, sample_scene
from shapesov.streams import stream_rng


@dataclass(frozen=True)
class VlmExamples:
    """N examples; shape_ids index SHAPE_NAMES, region_prompts name how each view was made."""

    images: list[Image.Image]
    prompts: list[str]
    answers: list[str]
    shape_ids: np.ndarray  # (N,) int64
    region_prompts: list[str]

    def __len__(self) -> int:
        return len(self.answers)


def answer_for(colour: str, shape: str) -> str:
    """What the teacher says about an object: a short noun phrase."""
    return f"a {colour} {shape}"


def labeler_styles(section: VlmSection = VlmSection()) -> dict[str, RegionPromptStyle]:
    """Region prompt name → the style the `vlm` labeler uses with these settings (its defaults unless given)."""
    return {kind: region_prompt_style(dataclasses.replace(section, region_prompt=kind)) for kind in REGION_PROMPTS}


def proposal_like_box(rng: np.random.Generator, box_xywh, jitter: float, width: int, height: int
                      ) -> tuple[float, float, float, float]:
    """xyxy: the box with its centre shifted and its sides scaled by N(0, jitter) relative amounts, inside the image."""
    x, y, w, h = box_xywh
    cx, cy = x + w / 2 + rng.normal(0, jitter) * w, y + h / 2 + rng.normal(0, jitter) * h
    w, h = w * math.exp(rng.normal(0, jitter)), h * math.exp(rng.normal(0, jitter))
    x0, y0 = min(max(cx - w / 2, 0.0), width - 2.0), min(max(cy - h / 2, 0.0), height - 2.0)
    return x0, y0, min(max(cx + w / 2, x0 + 2.0), width), min(max(cy + h / 2, y0 + 2.0), height)


def scene_examples(scene: Scene, rng: np.random.Generator, boxes_per_object: int, jitter: float,
                   styles: dict[str, RegionPromptStyle]) -> VlmExamples:
    """Every object of one scene behind `boxes_per_object` boxes, each box shown in every style."""
    pixels = np.asarray(scene.image.convert("RGB"))
    images, prompts, answers, shapes, kinds = [], [], [], [], []
    for obj in scene.objects:
        for _ in range(boxes_per_object):
            box = proposal_like_box(rng, obj.bbox, jitter, scene.width, scene.height)
            for kind, style in styles.items():
                image, prompt = region_view(pixels, box, style)
                images.append(image)
                prompts.append(prompt)
                answers.append(answer_for(obj.colour, obj.shape))
                shapes.append(SHAPE_NAMES.index(obj.shape))
                kinds.append(kind)
    return VlmExamples(images, prompts, answers, np.array(shapes, dtype=np.int64), kinds)


def render_examples(seed: int, purpose: str, n_scenes: int, boxes_per_object: int, jitter: float,
                    styles: dict[str, RegionPromptStyle], scene_cfg: SceneConfig = SceneConfig()) -> VlmExamples:
    """The examples of `n_scenes` scenes of stream `purpose`, scene by scene."""
    parts = [scene_examples(sample_scene(rng, scene_cfg), rng, boxes_per_object, jitter, styles)
             for rng in (stream_rng(seed, purpose, index) for index in range(n_scenes))]
    return VlmExamples([i for p in parts for i in p.images], [t for p in parts for t in p.prompts],
                       [a for p in parts for a in p.answers],
                       np.concatenate([p.shape_ids for p in parts]) if parts else np.zeros(0, np.int64),
                       [k for p in parts for k in p.region_prompts])
