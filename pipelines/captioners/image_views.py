"""What the captioners that look at the image files share (`blip2`, `vlm`): each image decoded once, one view per
region, the views of every image of the batch answered in one call, the answers handed back image by image."""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from pipelines.captioners.base import CaptionFailure, CaptionResult, ImageRegions
from vlm.images import DecodedImage, ImageReadError, PathEscapeError, load_image, resolve_image_path

View = TypeVar("View")


def decoded_image(image_root: str, item: ImageRegions) -> DecodedImage | CaptionFailure:
    """The image's pixels, or why there are none (missing, unreadable, a path outside the image root)."""
    try:
        return load_image(resolve_image_path(image_root, item.file_name))
    except ImageReadError as error:
        return CaptionFailure(error.kind, f"image {item.image_id}: {error}")
    except PathEscapeError as error:
        return CaptionFailure("path_escape", f"image {item.image_id}: {error}")


def answer_by_image(views: Sequence[list[View] | CaptionFailure],
                    answer: Callable[[list[View]], list[str]]) -> list[CaptionResult]:
    """Per image its views (or a failure) → per image its answers, all views answered by one `answer` call."""
    flat = [view for per_image in views if not isinstance(per_image, CaptionFailure) for view in per_image]
    answers = answer(flat) if flat else []
    results: list[CaptionResult] = []
    position = 0
    for per_image in views:
        if isinstance(per_image, CaptionFailure):
            results.append(per_image)
            continue
        results.append(answers[position:position + len(per_image)])
        position += len(per_image)
    return results
