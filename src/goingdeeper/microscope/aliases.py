"""The layer names of Lucid and OpenAI Microscope's InceptionV1, accepted for our GoogLeNet.

Lucid's InceptionV1 is the TensorFlow graph Google released with DeepDream ("inception5h"),
GoogLeNet as in the paper, its layers named by the TensorFlow op that made them: `conv2d0`
for conv1's 7x7, `mixed3a` ... `mixed5b` for the nine Inception modules, `maxpool4` and
`maxpool10` for the pools between them (counted among all of the graph's max pools), and
`<module>_<branch>` for the convolutions inside a module. Feature visualisation papers name
their units this way (`mixed4a:97`), so these names are accepted wherever a layer is asked for.

Only layers map: Lucid's network was trained separately from the BVLC weights, so channel 97
of `mixed4a` is a different unit in each (the same index, another feature).
"""

from __future__ import annotations

from torch import nn

from ..analysis.trace import layer_names, unknown_layer
from ..errors import VisualizeError

MODULES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")

# Lucid name -> our GoogLeNet's module (models/googlenet.py)
INCEPTION_V1 = {
    "conv2d0": "conv1",
    "maxpool0": "pool1",
    "localresponsenorm0": "lrn1",
    "conv2d1": "conv2_reduce",
    "conv2d2": "conv2",
    "localresponsenorm1": "lrn2",
    "maxpool1": "pool2",
    "maxpool4": "pool3",
    "maxpool10": "pool4",
    "avgpool0": "avgpool",
    "softmax2_pre_activation": "fc",
    **{f"mixed{m}": f"inception{m}" for m in MODULES},
    **{
        f"mixed{m}_{lucid}": f"inception{m}.{ours}"
        for m in MODULES
        for lucid, ours in (
            ("1x1", "branch1x1"),
            ("3x3_bottleneck", "branch3x3.reduce"),
            ("3x3", "branch3x3.conv"),
            ("5x5_bottleneck", "branch5x5.reduce"),
            ("5x5", "branch5x5.conv"),
            ("pool", "branch_pool.pool"),
            ("pool_reduce", "branch_pool.proj"),
        )
    },
}


def resolve_layer(model: nn.Module, name: str) -> str:
    """Our module name for `name`: itself when the model has it, else its Lucid alias when the
    model has the module the alias stands for; an `UnknownLayerError` otherwise. A Lucid
    `_pre_relu` name gives the same module: feature visualisation optimises the unit before
    its ReLU wherever the layer ends in one (`featurevis.pre_relu_sources`)."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return name
    ours = INCEPTION_V1.get(name.removesuffix("_pre_relu"))
    if ours is None or ours not in modules:
        raise unknown_layer(name, layer_names(model))
    return ours


def parse_unit(model: nn.Module, text: str) -> tuple[str, int]:
    """'mixed4a:97' or 'inception4a:97' -> ('inception4a', 97), the layer resolved."""
    layer, sep, channel = text.rpartition(":")
    if not sep or not channel.isdigit():
        raise VisualizeError(f"a unit is LAYER:CHANNEL such as mixed4a:97, got {text!r}")
    return resolve_layer(model, layer), int(channel)
