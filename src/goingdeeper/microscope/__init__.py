"""A microscope for the whole line: feature visualisation by optimisation, attribution through
captum, Lucid's InceptionV1 layer names, and a static web site of one network's units.

    visualize_units(model, prep, [Unit("inception4a", 97)])   # Olah et al. 2017
    grad_cam(model, x, "inception4e", [281, 282])             # Selvaraju et al. 2017
    integrated_gradients(model, x, 281)                       # Sundararajan et al. 2017
    resolve_layer(model, "mixed4a")                           # -> "inception4a"
    build_site(model, card, files, out, layers=[...])        # the pages, resumable
"""

from .aliases import INCEPTION_V1, parse_unit, resolve_layer
from .attribution import (
    grad_cam,
    heat_overlay,
    integrated_gradients,
    saliency_picture,
)
from .featurevis import (
    COLOUR_SQRT,
    FourierImage,
    Robustness,
    Unit,
    colour_sqrt,
    network_input,
    unit_value,
    visualize_units,
)

__all__ = [
    "COLOUR_SQRT",
    "INCEPTION_V1",
    "FourierImage",
    "Robustness",
    "Unit",
    "colour_sqrt",
    "grad_cam",
    "heat_overlay",
    "integrated_gradients",
    "network_input",
    "parse_unit",
    "resolve_layer",
    "saliency_picture",
    "unit_value",
    "visualize_units",
]
