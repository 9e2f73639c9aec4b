"""Images grouped so that each is padded in its forward as it would be alone: a network's proposals for an image
then do not depend on the images it was batched with.

The network's input transform pads the images of one forward to the largest of them, and features near an image's
border see that padding. In a forward of images that each pad to the same size alone, every image is padded as it
would be alone.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from torchvision.models.detection.transform import GeneralizedRCNNTransform


def padded_input_size(transform: GeneralizedRCNNTransform, height: int, width: int) -> tuple[int, int]:
    """The size the network's input transform gives an image of `height` x `width` in eval mode, padding included,
    when the image is alone in its forward: torchvision/models/detection/transform.py, _resize_image_and_masks
    (scale = min(min_size / shorter side, max_size / longer side), each side floor(side x scale), as
    F.interpolate with recompute_scale_factor computes it) then batch_images (each side up to a multiple of
    size_divisible)."""
    if transform.fixed_size is not None:
        resized = (transform.fixed_size[1], transform.fixed_size[0])
    else:
        scale = min(transform.min_size[-1] / min(height, width), transform.max_size / max(height, width))
        resized = (math.floor(height * scale), math.floor(width * scale))
    stride = transform.size_divisible
    return tuple(int(math.ceil(side / stride) * stride) for side in resized)


def same_padding_groups(images: Sequence[np.ndarray], transform: GeneralizedRCNNTransform) -> list[list[int]]:
    """Positions of `images` grouped by the size the network pads each to alone, groups in order of first appearance.

    The network pads the images of one forward to the largest of them, and features near an image's border see that
    padding, so an image's proposals would depend on which images Beam batched it with. In a forward of images that
    each pad to the same size alone, every image is padded as it would be alone: its proposals are its own."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, pixels in enumerate(images):
        groups.setdefault(padded_input_size(transform, *pixels.shape[:2]), []).append(position)
    return list(groups.values())
