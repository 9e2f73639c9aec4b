"""Object names of ground-truth boxes (Open-Det's training targets), from a names JSONL or the category names.

The names file (config key `dataset.names`) has one line per annotation:

    {"image_id": 1, "ann_id": 2, "bbox": [x, y, w, h], "names": ["red star", "star"]}

Every string of `names` names the same object. Visual Genome writes synonyms into one string ("man, person"); each
part becomes an alternative of its own, so that object has the alternatives ("man", "person"). Lines are matched to
annotations by `ann_id` (exact, unlike boxes); `image_id` must agree with the annotation's, `bbox` is informative.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from pipelines.coco import AnnotationError, CocoDataset, OpenFn, open_local

REQUIRED_KEYS = ("image_id", "ann_id", "names")


class NamesFileError(AnnotationError):
    """A names file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class ObjectNames:
    """One line of a names file: the object's alternative names, in the file's order."""

    image_id: int
    alternatives: tuple[str, ...]
    line: int  # 1-based line of the file, for messages


def split_synonyms(name: str) -> tuple[str, ...]:
    """'man, person' → ('man', 'person'); surrounding blanks and empty parts are dropped."""
    return tuple(part.strip() for part in name.split(",") if part.strip())


def name_alternatives(names: Iterable[str]) -> tuple[str, ...]:
    """The alternatives of one object: each name's synonyms in order, each once."""
    return tuple(dict.fromkeys(part for name in names for part in split_synonyms(name)))


def _integer(record: dict, key: str, where: str) -> int:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise NamesFileError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def _entry(raw: str, where: str, line: int) -> tuple[int, ObjectNames]:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise NamesFileError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(record, dict):
        raise NamesFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise NamesFileError(f"{where}: missing key {missing[0]!r} (every line needs {', '.join(REQUIRED_KEYS)})")
    names = record["names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise NamesFileError(f"{where}: names must be a list of strings, got {names!r:.200}")
    alternatives = name_alternatives(names)
    if not alternatives:
        raise NamesFileError(f"{where}: names {names!r:.200} holds no name")
    return _integer(record, "ann_id", where), ObjectNames(_integer(record, "image_id", where), alternatives, line)


def read_object_names(path: str, open_fn: OpenFn = open_local) -> dict[int, ObjectNames]:
    """annotation id → its names. Blank lines are allowed; anything else that is not a well-formed line raises
    NamesFileError naming `path` and the line (malformed JSON, a missing key, names that are not strings, an
    annotation id given twice)."""
    try:
        with open_fn(path) as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"names file not found: {path} (config key dataset.names)") from error
    except UnicodeDecodeError as error:
        raise NamesFileError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    entries: dict[int, ObjectNames] = {}
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        annotation_id, entry = _entry(raw, f"{path}, line {line}", line)
        if annotation_id in entries:
            raise NamesFileError(f"{path}, line {line}: ann_id {annotation_id} is named twice (first on line "
                                 f"{entries[annotation_id].line})")
        entries[annotation_id] = entry
    return entries


@dataclass(frozen=True)
class AnnotationNames:
    """The alternatives of each named annotation, and how many file lines named no annotation of the dataset."""

    by_annotation: dict[int, tuple[str, ...]]
    unmatched_lines: int = 0


def name_annotations(dataset: CocoDataset, entries: dict[int, ObjectNames] | None, path: str,
                     by_category: bool) -> AnnotationNames:
    """Names of the dataset's annotations (those kept after the OV split, so novel boxes stay unnamed in the
    strict setting): the names file's line where there is one, else the category name if `by_category`.

    Lines for annotations the dataset does not hold (novel boxes, other splits) are counted, not used. A line whose
    image_id disagrees with its annotation's is a NamesFileError: the file belongs to other annotations."""
    entries = entries or {}
    categories = dataset.category_names()
    named: dict[int, tuple[str, ...]] = {}
    for image_annotations in dataset.annotations.values():
        for annotation in image_annotations:
            entry = entries.get(annotation.annotation_id)
            if entry is not None:
                if entry.image_id != annotation.image_id:
                    raise NamesFileError(
                        f"{path}, line {entry.line}: ann_id {annotation.annotation_id} is on image {entry.image_id} "
                        f"here but on image {annotation.image_id} in {dataset.source}; the names file does not "
                        f"belong to these annotations (config keys dataset.names, dataset.annotations)")
                named[annotation.annotation_id] = entry.alternatives
            elif by_category:
                named[annotation.annotation_id] = (categories[annotation.category_id],)
    unmatched = sum(1 for annotation_id in entries if annotation_id not in named)
    return AnnotationNames(named, unmatched)
