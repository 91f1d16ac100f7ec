"""ImageNet knowledge: the 1,000 classes (names, WordNet ids, the standard order), class maps
that resolve a folder or file name to a class by identity, and the label files of every form
ImageNet's validation photos come with (ReaL too)."""

from .classes import (
    ClassMap,
    data_classes,
    imagenet_class_ids,
    imagenet_class_names,
    imagenet_classes,
)
from .labels import read_labels, real_labels

__all__ = [
    "ClassMap",
    "data_classes",
    "imagenet_class_ids",
    "imagenet_class_names",
    "imagenet_classes",
    "read_labels",
    "real_labels",
]
