"""Looking inside: the ZFNet deconvnet, top-9 activations, filters, feature maps, occlusion.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
arXiv:1311.2901. Works on GoogLeNet (its Inception modules included) and on any model built
as a stack of Conv2d, ReLU, MaxPool2d, LocalResponseNorm, BatchNorm2d and Dropout modules;
the model is only watched through hooks, never modified. Every function returns tensors or
`PIL.Image`s; `pictures.save_png` writes them.

    trace = record(model, x, keep=["inception3a"])        # forward pass: order, pool switches
    pixels = project(trace, "inception3a", signal)        # back to the input, section 2.1
    deconv(model, x, "inception4d", [5, 9])               # one image, chosen channels
    top_activations(model, prep, images, ["conv1"], ...)  # Fig. 2, then top9_grid(...)
"""

from ..analysis.trace import Trace, layer_names, record
from ..errors import UnknownLayerError, UnsupportedLayerError, VisualizeError
from .deconv import (
    Reconstruction,
    deconv,
    filter_transposed,
    project,
    receptive_field,
    rectify,
    unpool,
)
from .maps import deconv_picture, feature_map_grid, feature_maps, filter_grid, find_conv
from .occlusion import OcclusionMap, occlusion_maps, occlusion_picture, occlusion_sensitivity
from .pictures import save_png
from .top9 import (
    Top9Entry,
    Top9Result,
    images_to_rank,
    network_view,
    top9_grid,
    top_activations,
)

__all__ = [
    "OcclusionMap",
    "Reconstruction",
    "Top9Entry",
    "Top9Result",
    "Trace",
    "UnknownLayerError",
    "UnsupportedLayerError",
    "VisualizeError",
    "deconv",
    "deconv_picture",
    "feature_map_grid",
    "feature_maps",
    "filter_grid",
    "filter_transposed",
    "find_conv",
    "images_to_rank",
    "layer_names",
    "network_view",
    "occlusion_maps",
    "occlusion_picture",
    "occlusion_sensitivity",
    "project",
    "receptive_field",
    "record",
    "rectify",
    "save_png",
    "top9_grid",
    "top_activations",
    "unpool",
]
