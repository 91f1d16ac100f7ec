"""Weights: our safetensors format with its card, one checked loader, one importer per source
(torchvision, timm, pretrainedmodels, Caffe), the forms people keep weights in (`open_weights`, hub
folders), and the catalogue of published weights, fetched by name (`load_pretrained`)."""

from ..data.imagenet.classes import imagenet_class_ids, imagenet_class_names
from .bvlc import import_bvlc, read_caffemodel
from .caffe import import_caffe
from .catalogue import (
    WeightsEntry,
    all_entries,
    find_entry,
    get_entry,
    register_weights,
    timm_installed,
)
from .format import WeightsCard, load_weights, read_card, save_weights, weights_path
from .hub import export_hub, model_readme, open_weights
from .loading import check_fit, load_checked, read_state_dict, recognise_state
from .pretrained import (
    cache_home,
    cache_state,
    is_cached,
    load_pretrained,
    place_file,
    pretrained_path,
    weights_file,
)
from .pretrainedmodels import import_pretrainedmodels, recognise_pretrainedmodels
from .timm import import_timm, recognise_timm
from .torchvision import import_torchvision, recognise, torchvision_preprocessing

__all__ = [
    "WeightsCard",
    "WeightsEntry",
    "all_entries",
    "cache_home",
    "cache_state",
    "find_entry",
    "get_entry",
    "is_cached",
    "load_pretrained",
    "place_file",
    "pretrained_path",
    "register_weights",
    "timm_installed",
    "check_fit",
    "export_hub",
    "imagenet_class_ids",
    "imagenet_class_names",
    "import_bvlc",
    "import_caffe",
    "import_pretrainedmodels",
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
    "recognise_pretrainedmodels",
    "recognise_state",
    "recognise_timm",
    "save_weights",
    "weights_file",
    "weights_path",
    "torchvision_preprocessing",
]
