"""Weights: our safetensors format, and importers for BVLC Caffe and torchvision weights."""

from .caffe import import_bvlc, read_caffemodel
from .format import WeightsCard, WeightsError, load_weights, read_card, save_weights
from .torchvision import convert_torchvision_state_dict, import_torchvision

__all__ = [
    "WeightsCard",
    "WeightsError",
    "convert_torchvision_state_dict",
    "import_bvlc",
    "import_torchvision",
    "load_weights",
    "read_caffemodel",
    "read_card",
    "save_weights",
]
