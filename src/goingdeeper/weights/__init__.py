"""Weights: our safetensors format with its card, one checked loader, and one importer per
source (torchvision, BVLC Caffe)."""

from .bvlc import import_bvlc, read_caffemodel
from .format import WeightsCard, load_weights, read_card, save_weights
from .loading import check_fit, imagenet_class_names, load_checked, read_state_dict
from .torchvision import IMAGENET_RGB_V2, import_torchvision, recognise

__all__ = [
    "IMAGENET_RGB_V2",
    "WeightsCard",
    "check_fit",
    "imagenet_class_names",
    "import_bvlc",
    "import_torchvision",
    "load_checked",
    "load_weights",
    "read_caffemodel",
    "read_card",
    "read_state_dict",
    "recognise",
    "save_weights",
]
