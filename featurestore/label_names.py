"""When a label string names a class: the word rule shared by the labels report (pseudo-label accuracy, base
synonyms) and the trainer (pseudo labels that name a base class are left out of training)."""
from __future__ import annotations

from typing import Iterable


def names_class(label: str, class_name: str) -> bool:
    """True when every word of the class name is a word of the label ("red star" names "star")."""
    words = set(label.lower().replace("-", " ").split())
    return set(class_name.lower().replace("_", " ").split()) <= words


def names_any_class(label: str, class_names: Iterable[str]) -> bool:
    """True when the label names one of `class_names`."""
    return any(names_class(label, name) for name in class_names)
