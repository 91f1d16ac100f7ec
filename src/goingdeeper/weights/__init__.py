"""Weights: our safetensors format with its card, one checked loader, one importer per source
(torchvision, timm, Caffe), and the forms people keep weights in (`open_weights`, hub
folders)."""

from ..data.classes import imagenet_class_ids, imagenet_class_names
from .bvlc import import_bvlc, read_caffemodel
from .caffe import import_caffe
from .format import WeightsCard, load_weights, read_card, save_weights, weights_path
from .hub import export_hub, model_readme, open_weights
from .loading import check_fit, load_checked, read_state_dict, recognise_state
from .timm import import_timm, recognise_timm
from .torchvision import import_torchvision, recognise, torchvision_preprocessing

__all__ = [
    "WeightsCard",
    "check_fit",
    "export_hub",
    "imagenet_class_ids",
    "imagenet_class_names",
    "import_bvlc",
    "import_caffe",
    "import_timm",
    "import_torchvision",
    "load_checked",
    "load_weights",
    "model_readme",
    "open_weights",
    "read_caffemodel",
    "read_card",
    "read_state_dict",
    "recognise",
    "recognise_state",
    "recognise_timm",
    "save_weights",
    "weights_path",
    "torchvision_preprocessing",
]
