"""Caffe models of the line: a `.prototxt` and its `.caffemodel` as one of our models.

The papers of 2012-2014 released their weights as Caffe models: BVLC's AlexNet and CaffeNet,
the VGG team's 16- and 19-layer nets, NIN's ImageNet model, BVLC's GoogLeNet. `import_caffe`
reads the prototxt's layer graph (`prototxt.py`; V1 `layers` and V2 `layer` files alike, a
deploy file or a train_val read at test time) and compares it, layer by layer, with
`caffe_graphs()`: for each model, the sequence of Caffe layers it is (type, kernel, stride,
pad, outputs, group; what each layer reads), derived from the model's own table
(`ALEXNET_CONVS`, `CFGS`, `INCEPTION_TABLE`, `NIN_IMAGENET`). The graph that fits names the
registered model; a file that fits none is one line naming its first layer that does not fit
the nearest graph. The blobs of the `.caffemodel` (`bvlc.read_caffemodel`) are then taken by
the prototxt's layer names, whatever those are, and the card holds the release's input: BGR,
0-255, minus the mean, at the crop the release states.

A few values are left open by a graph (`Free`): the width of the FC layers and the number of
classes (a fine-tuned model), AlexNet's LRN alpha and k. They become the model's arguments.
Dropout is the identity at test time, so its ratio is not compared; after the logits, a
Softmax (or a train_val's accuracy and loss) is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..models.alexnet import ALEXNET_CONVS, LRN_AFTER, LRN_BETA, LRN_SIZE, POOL_AFTER
from ..models.googlenet import INCEPTION_TABLE
from ..models.googlenet import LRN_ALPHA as GOOGLENET_LRN_ALPHA
from ..models.googlenet import LRN_K as GOOGLENET_LRN_K
from ..models.googlenet import POOL_AFTER as GOOGLENET_POOL_AFTER
from ..models.nin import NIN_IMAGENET
from ..models.vgg import CFGS, parse_layer
from ..preprocess import CAFFE_BGR, Preprocessing, mean_subtracted
from ..registry import build_shell
from .bvlc import read_caffemodel
from .format import WeightsCard
from .loading import load_checked
from .prototxt import Message, read_prototxt

MAX_LAYERS = 5_000  # GoogLeNet's deploy graph has 142; a file of more is not one of ours

# V1 files name their types with an enum; V2 files with these strings
V1_TYPES = {
    "ACCURACY": "Accuracy",
    "CONCAT": "Concat",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "HDF5_DATA": "HDF5Data",
    "IMAGE_DATA": "ImageData",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "POOLING": "Pooling",
    "RELU": "ReLU",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "WINDOW_DATA": "WindowData",
}
WEIGHTED = ("Convolution", "InnerProduct")
# layers that feed the network (a train_val's data layers: their tops are its inputs) ...
DATA_TYPES = ("Input", "Data", "HDF5Data", "ImageData", "MemoryData", "WindowData")
# ... and those that may read its logits after the graph: a deploy's Softmax, a train_val's
# accuracy and loss
OUTPUT_TYPES = ("Softmax", "Accuracy", "SoftmaxWithLoss")


# --- the prototxt's layers, their parameters normalised -------------------------------------


class CaffeLayer(NamedTuple):
    """One layer of a prototxt: its place in the file (1-based), name, type (V2 spelling),
    the blobs it reads and writes, and the parameters its arithmetic depends on."""

    index: int
    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict

    def describe(self) -> str:
        return f"layer {self.index} {self.name!r} ({_describe(self.type, self.params)})"


def _describe(type_: str, params: dict) -> str:
    shown = ", ".join(f"{k} {_show(v)}" for k, v in params.items())
    return f"{type_} {shown}" if shown else type_


def _show(value) -> str:
    if isinstance(value, Free):
        return f"<{value.argument}>"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _last(message: Message, key: str, default=None):
    """A scalar field's value: protobuf keeps the last of repeated scalars."""
    values = message.get(key)
    return values[-1] if values else default


def _square(message: Message, key: str, prefix: str, default: int):
    """`kernel_size`, `stride` or `pad` (one value, or h and w; or `<prefix>_h` and
    `<prefix>_w`): one number for a square, (h, w) where they differ."""
    values = list(message.get(key, []))
    h, w = _last(message, f"{prefix}_h"), _last(message, f"{prefix}_w")
    if h is not None or w is not None:
        values = [default if h is None else h, default if w is None else w]
    if not values:
        return default
    return values[0] if all(v == values[0] for v in values) else tuple(values)


def _sub(layer: Message, key: str) -> Message:
    """A nested message (a layer's `convolution_param`, say); empty where absent or not one."""
    value = _last(layer, key, {})
    return value if isinstance(value, dict) else {}


def _params(type_: str, layer: Message) -> dict:
    """The parameters of one layer that decide its arithmetic, with Caffe's defaults."""
    if type_ == "Convolution":
        p = _sub(layer, "convolution_param")
        return {
            "num_output": _last(p, "num_output"),
            "kernel": _square(p, "kernel_size", "kernel", 0),
            "stride": _square(p, "stride", "stride", 1),
            "pad": _square(p, "pad", "pad", 0),
            "group": _last(p, "group", 1),
            "dilation": _last(p, "dilation", 1),
            "bias_term": _last(p, "bias_term", True),
        }
    if type_ == "Pooling":
        p = _sub(layer, "pooling_param")
        pool = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}.get(_last(p, "pool", "MAX"), _last(p, "pool"))
        global_pool = _last(p, "global_pooling", False)
        kernel = "global" if global_pool else _square(p, "kernel_size", "kernel", 0)
        return {
            "pool": pool,
            "kernel": kernel,
            "stride": _square(p, "stride", "stride", 1),
            "pad": _square(p, "pad", "pad", 0),
        }
    if type_ == "LRN":
        p = _sub(layer, "lrn_param")
        region = _last(p, "norm_region", "ACROSS_CHANNELS")
        return {
            "local_size": _last(p, "local_size", 5),
            "alpha": float(_last(p, "alpha", 1.0)),
            "beta": float(_last(p, "beta", 0.75)),
            "k": float(_last(p, "k", 1.0)),
            "region": {0: "ACROSS_CHANNELS", 1: "WITHIN_CHANNEL"}.get(region, region),
        }
    if type_ == "InnerProduct":
        p = _sub(layer, "inner_product_param")
        return {
            "num_output": _last(p, "num_output"),
            "bias_term": _last(p, "bias_term", True),
            "axis": _last(p, "axis", 1),
            "transpose": _last(p, "transpose", False),
        }
    if type_ == "ReLU":
        return {"negative_slope": float(_last(_sub(layer, "relu_param"), "negative_slope", 0.0))}
    if type_ in ("Concat", "Softmax"):
        p = _sub(layer, "concat_param" if type_ == "Concat" else "softmax_param")
        return {"axis": _last(p, "axis", _last(p, "concat_dim", 1))}
    return {}  # Dropout: the identity at test time; other types fit no graph here


@dataclass(frozen=True)
class CaffeNet:
    """A prototxt's network: its name, input shape (as written; may be empty) and layers."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[CaffeLayer, ...]
    inputs: tuple[str, ...]  # the blobs fed from outside


def _dims(values: list, path) -> tuple[int, ...]:
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in values):
        raise WeightsError(f"{path}: the input's dimensions {values} are not all counts")
    return tuple(values)


def _input_shape(net: Message, path) -> tuple[int, ...]:
    dims = net.get("input_dim", [])
    if not dims and net.get("input_shape"):
        dims = _sub(net, "input_shape").get("dim", [])
    return _dims(dims, path)


def _in_test_phase(entry: Message) -> bool:
    """Whether a layer is part of the network at test time (a train_val's TRAIN-only data and
    loss layers are not)."""
    include = [_last(rule, "phase") for rule in entry.get("include", []) if isinstance(rule, dict)]
    exclude = [_last(rule, "phase") for rule in entry.get("exclude", []) if isinstance(rule, dict)]
    if any(phase in ("TEST", 1) for phase in exclude):
        return False
    return not include or any(phase in ("TEST", 1, None) for phase in include)


def read_net(path: str | Path) -> CaffeNet:
    """The layers of a Caffe `.prototxt` (V1 `layers` or V2 `layer`, deploy or train_val) at
    test time, its Input and data layers read as the network's input."""
    message = read_prototxt(path)
    entries = message.get("layer", []) or message.get("layers", [])
    if not entries:
        raise WeightsError(f"{path}: no layers; give a Caffe deploy .prototxt")
    if len(entries) > MAX_LAYERS:
        raise WeightsError(f"{path}: {len(entries):,} layers, over {MAX_LAYERS:,}")
    inputs = [str(name) for name in message.get("input", [])]
    shape = _input_shape(message, path)
    layers = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise WeightsError(f"{path}: layer {index} is not a message")
        raw = str(_last(entry, "type", ""))
        type_ = V1_TYPES.get(raw, raw)
        tops = tuple(str(t) for t in entry.get("top", []))
        if not _in_test_phase(entry):
            continue
        if type_ in DATA_TYPES:
            inputs.extend(tops)
            dims = _sub(_sub(entry, "input_param"), "shape").get("dim", [])
            shape = shape or _dims(dims, path)
            continue
        name = str(_last(entry, "name", f"#{index}"))
        bottoms = tuple(str(b) for b in entry.get("bottom", []))
        layers.append(CaffeLayer(index, name, type_, bottoms, tops, _params(type_, entry)))
    return CaffeNet(str(_last(message, "name", "")), shape, tuple(layers), tuple(inputs))


# --- the graphs of our models, as Caffe writes them ------------------------------------------


class Free(NamedTuple):
    """A parameter a graph leaves open: the model argument its value becomes."""

    argument: str


class Step(NamedTuple):
    """One expected layer: its type and parameters, our name for it (the module holding its
    weight and bias for a weighted layer) and the steps whose outputs it reads."""

    type: str
    params: dict
    key: str
    inputs: tuple[str, ...]


class _Builder:
    """Steps in order, each reading the previous one unless told otherwise."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.last = "data"

    def add(self, type_: str, key: str, inputs: tuple[str, ...] | None = None, **params) -> str:
        self.steps.append(Step(type_, params, key, inputs or (self.last,)))
        self.last = key
        return key

    def conv(
        self, module: str, out, k: int, s: int = 1, p: int = 0, group: int = 1, *, inputs=None
    ) -> str:
        """A convolution and its ReLU; returns the ReLU's key."""
        params = dict(num_output=out, kernel=k, stride=s, pad=p, group=group, dilation=1)
        self.add("Convolution", module, inputs, **params, bias_term=True)
        return self.add("ReLU", f"{module}/relu", negative_slope=0.0)

    def pool(self, key: str, kind: str, k: int, s: int, p: int = 0, *, inputs=None) -> str:
        return self.add("Pooling", key, inputs, pool=kind, kernel=k, stride=s, pad=p)

    def lrn(self, key: str, alpha, k) -> str:
        params = dict(local_size=LRN_SIZE, alpha=alpha, beta=LRN_BETA, k=k)
        return self.add("LRN", key, **params, region="ACROSS_CHANNELS")

    def fc(self, module: str, out, *, relu: bool = True, dropout: bool = True) -> str:
        params = dict(num_output=out, bias_term=True, axis=1, transpose=False)
        self.add("InnerProduct", module, **params)
        if relu:
            self.add("ReLU", f"{module}/relu", negative_slope=0.0)
        if dropout:
            self.add("Dropout", f"{module}/dropout")
        return self.last


def alexnet_steps(*, pool_first: bool) -> tuple[Step, ...]:
    """AlexNet's graph from `ALEXNET_CONVS`; CaffeNet's pools come before its LRNs."""
    g = _Builder()
    for name, width, k, s, p, groups in ALEXNET_CONVS:
        g.conv(f"{name}.conv", width, k, s, p, groups)
        i, pool = name[-1], name in POOL_AFTER
        if pool and pool_first:
            g.pool(f"pool{i}", "MAX", 3, 2)
        if name in LRN_AFTER:
            g.lrn(f"lrn{i}", Free("lrn_alpha"), Free("lrn_k"))
        if pool and not pool_first:
            g.pool(f"pool{i}", "MAX", 3, 2)
    g.fc("fc6.fc", Free("fc_width"))
    g.fc("fc7.fc", Free("fc_width"))
    g.fc("fc8", Free("num_classes"), relu=False, dropout=False)
    return tuple(g.steps)


def vgg_steps(cfg: str) -> tuple[Step, ...]:
    """A VGG configuration's graph from Table 1 (`CFGS`), as the authors' deploy files are."""
    g = _Builder()
    for b, block in enumerate(CFGS[cfg], start=1):
        for i, spec in enumerate(block, start=1):
            k, width = parse_layer(spec)
            g.conv(f"conv{b}_{i}.conv", width, k, p=k // 2)
        g.pool(f"pool{b}", "MAX", 2, 2)
    g.fc("fc6.fc", Free("fc_width"))
    g.fc("fc7.fc", Free("fc_width"))
    g.fc("fc8", Free("num_classes"), relu=False, dropout=False)
    return tuple(g.steps)


def googlenet_steps() -> tuple[Step, ...]:
    """GoogLeNet's graph (BVLC's deploy file, no aux heads) from `INCEPTION_TABLE`; each
    module's branches in Caffe's order, concatenated 1x1, 3x3, 5x5, pool."""
    g = _Builder()
    g.conv("conv1.conv", 64, 7, 2, 3)
    g.pool("pool1", "MAX", 3, 2)
    g.lrn("lrn1", GOOGLENET_LRN_ALPHA, GOOGLENET_LRN_K)
    g.conv("conv2_reduce.conv", 64, 1)
    g.conv("conv2.conv", 192, 3, p=1)
    g.lrn("lrn2", GOOGLENET_LRN_ALPHA, GOOGLENET_LRN_K)
    g.pool("pool2", "MAX", 3, 2)
    for name, c1, c3r, c3, c5r, c5, proj in INCEPTION_TABLE:
        x = (g.last,)
        b1 = g.conv(f"{name}.branch1x1.conv", c1, 1, inputs=x)
        g.conv(f"{name}.branch3x3.reduce.conv", c3r, 1, inputs=x)
        b3 = g.conv(f"{name}.branch3x3.conv.conv", c3, 3, p=1)
        g.conv(f"{name}.branch5x5.reduce.conv", c5r, 1, inputs=x)
        b5 = g.conv(f"{name}.branch5x5.conv.conv", c5, 5, p=2)
        g.pool(f"{name}.branch_pool.pool", "MAX", 3, 1, 1, inputs=x)
        bp = g.conv(f"{name}.branch_pool.proj.conv", proj, 1)
        g.add("Concat", name, (b1, b3, b5, bp), axis=1)
        if name in GOOGLENET_POOL_AFTER:
            g.pool(GOOGLENET_POOL_AFTER[name], "MAX", 3, 2)
    g.pool("avgpool", "AVE", 7, 1)  # our global average pool: the same at 224
    g.add("Dropout", "dropout")
    g.fc("fc", Free("num_classes"), relu=False, dropout=False)
    return tuple(g.steps)


def nin_steps() -> tuple[Step, ...]:
    """The ImageNet NIN's graph from `NIN_IMAGENET`: per mlpconv block a convolution, two 1x1
    "cccp" layers (each with its ReLU), a pool and maybe a dropout; the last cccp gives the
    class maps and the last pool, an average over their 6x6, the scores."""
    g = _Builder()
    class_maps = NIN_IMAGENET[-1].cccp[-1]
    for conv, cccps, (pool, kind, k, stride), drop in NIN_IMAGENET:
        name, width, kernel, s, p = conv
        g.conv(f"{name}.conv", width, kernel, s, p)
        for cccp in cccps:
            g.conv(f"{cccp[0]}.conv", Free("num_classes") if cccp == class_maps else cccp[1], 1)
        g.pool(pool, "MAX" if kind == "max" else "AVE", k, stride)  # "global": the 6x6 AVE
        if drop:
            g.add("Dropout", drop)
    return tuple(g.steps)


@dataclass(frozen=True)
class CaffeGraph:
    """A registered model as a released Caffe graph: its layers, the model arguments every
    import takes, the input its release was trained on, and where that release is."""

    model: str
    title: str
    steps: tuple[Step, ...]
    preprocessing: Preprocessing
    url: str
    license: str
    reported: str
    kwargs: dict = field(default_factory=dict)


_BVLC_227 = mean_subtracted(
    (104.0, 117.0, 123.0),
    "BVLC Caffe: BGR, 0-255, minus the mean (104, 117, 123), 227x227 crops",
    crop=227,
    channel_order="BGR",
)
# The VGG team's note with their models: "the following BGR values should be subtracted"
_VGG_BGR = mean_subtracted(
    (103.939, 116.779, 123.68),
    "VGG's Caffe models: BGR, 0-255, minus the mean pixel (103.939, 116.779, 123.68)",
    channel_order="BGR",
)
_BVLC = "http://dl.caffe.berkeleyvision.org/"
_VGG = "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
_VGG_LICENSE = "Creative Commons Attribution 4.0 (CC BY 4.0), Simonyan & Zisserman"


def caffe_graphs() -> tuple[CaffeGraph, ...]:
    """The Caffe graphs `import_caffe` knows, in the order they are tried."""
    return (
        CaffeGraph(
            "alexnet", "BVLC AlexNet", alexnet_steps(pool_first=False), _BVLC_227,
            _BVLC + "bvlc_alexnet.caffemodel", "unrestricted use (BVLC model zoo)",
            "57.1% top-1, 80.2% top-5 (ILSVRC 2012 val, center crop)",
            {"ceil_pools": True},
        ),
        CaffeGraph(
            "caffenet", "BVLC reference CaffeNet", alexnet_steps(pool_first=True), _BVLC_227,
            _BVLC + "bvlc_reference_caffenet.caffemodel", "unrestricted use (BVLC model zoo)",
            "57.4% top-1, 80.4% top-5 (ILSVRC 2012 val, center crop)",
        ),
        CaffeGraph(
            "vgg_d", "VGG_ILSVRC_16_layers", vgg_steps("D"), _VGG_BGR,
            _VGG + "VGG_ILSVRC_16_layers.caffemodel", _VGG_LICENSE,
            "24.8% top-1, 7.5% top-5 error (paper Table 4: D, multi-scale evaluation)",
        ),
        CaffeGraph(
            "vgg_e", "VGG_ILSVRC_19_layers", vgg_steps("E"), _VGG_BGR,
            _VGG + "VGG_ILSVRC_19_layers.caffemodel", _VGG_LICENSE,
            "24.8% top-1, 7.5% top-5 error (paper Table 4: E, multi-scale evaluation)",
        ),
        CaffeGraph(
            "googlenet", "BVLC GoogLeNet", googlenet_steps(), CAFFE_BGR,
            _BVLC + "bvlc_googlenet.caffemodel", "unrestricted use (BVLC model zoo)",
            "68.7% top-1, 88.9% top-5 (ILSVRC 2012 val, center crop)",
            {"aux_logits": False},
        ),
        CaffeGraph(
            "nin_imagenet", "Network in Network ImageNet model", nin_steps(), CAFFE_BGR,
            "https://gist.github.com/mavenlin/d802a5849de39225bcc6",
            "non-commercial (its readme, after ImageNet's terms of access)",
            "59.36% top-1 (ILSVRC 2012 val, center crop)",
        ),
    )  # fmt: skip


# --- comparing a prototxt with a graph ----------------------------------------------------------


@dataclass
class Fit:
    """How far a prototxt follows a graph: the steps matched, the values of its `Free`
    parameters, our module -> the Caffe layer holding its blobs, and the first misfit."""

    graph: CaffeGraph
    matched: int = 0
    arguments: dict = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)
    misfit: str | None = None
    near: int = 0  # how many of the misfit layer's parameters do fit: ties go to the nearest


def _same(expected, actual) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=1e-6)
    return type(expected) is type(actual) and expected == actual


def _free_value(free: Free, value) -> bool:
    """Whether `value` can be the model argument `free` names."""
    if free.argument in ("fc_width", "num_classes"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _compare(step: Step, layer: CaffeLayer, producers: dict[str, str], fit: Fit) -> str | None:
    """Why `layer` is not `step` (None when it is), binding the step's `Free` values."""
    if layer.type != step.type:
        return f"expects {_describe(step.type, step.params)}"
    for key, expected in step.params.items():
        actual = layer.params.get(key)
        if isinstance(expected, Free):
            bound = fit.arguments.get(expected.argument)
            if not _free_value(expected, actual) or (bound is not None and bound != actual):
                return f"expects {key} {bound if bound is not None else _show(expected)}"
            fit.arguments[expected.argument] = actual
        elif not _same(expected, actual):
            return f"expects {key} {_show(expected)}"
    reads = tuple(producers.get(b, b) for b in layer.bottoms)
    if reads != step.inputs:
        return f"expects it to read {', '.join(step.inputs)}, not {', '.join(reads)}"
    return None


def fit_graph(net: CaffeNet, graph: CaffeGraph) -> Fit:
    """Follow `net` along `graph` layer by layer, as far as it fits."""
    fit = Fit(graph)
    producers = {name: "data" for name in net.inputs}  # blob -> the step that wrote it last
    layers = list(net.layers)
    for step, layer in zip(graph.steps, layers, strict=False):
        why = _compare(step, layer, producers, fit)
        if why is not None:
            fit.misfit = f"{layer.describe()} does not fit {graph.model}, which {why} there"
            fit.near = sum(
                layer.type == step.type and _same(v, layer.params.get(k))
                for k, v in step.params.items()
            )
            return fit
        producers.update({top: step.key for top in layer.tops})
        if step.type in WEIGHTED:
            fit.modules[step.key] = layer.name
        fit.matched += 1
    if len(layers) < len(graph.steps):
        step = graph.steps[len(layers)]
        fit.misfit = (
            f"the graph ends after {len(layers)} layers; {graph.model} goes on with "
            f"{_describe(step.type, step.params)}"
        )
        return fit
    logits = graph.steps[-1].key
    for layer in layers[len(graph.steps) :]:  # a Softmax, an accuracy, a loss of the logits
        reads = producers.get(layer.bottoms[0]) if layer.bottoms else None
        if layer.type not in OUTPUT_TYPES or reads != logits:
            fit.misfit = f"{layer.describe()} does not fit {graph.model}, which ends before it"
            return fit
    return fit


def recognise_net(net: CaffeNet, where: str = "the prototxt") -> Fit:
    """The graph `net` is; a `WeightsError` naming its first layer that does not fit the
    graph it follows furthest."""
    fits = [fit_graph(net, graph) for graph in caffe_graphs()]
    for fit in fits:
        if fit.misfit is None:
            return fit
    nearest = max(fits, key=lambda f: (f.matched, f.near))
    names = ", ".join(f.graph.model for f in fits)
    raise WeightsError(f"{where}: not a Caffe graph of {names}: {nearest.misfit}")


# --- the import --------------------------------------------------------------------------------


def _state(fit: Fit, blobs: dict[str, list[np.ndarray]], kwargs: dict, source: Path) -> dict:
    """The blobs of each weighted layer under our keys, shaped as the model's tensors."""
    expected = build_shell(fit.graph.model, **kwargs).state_dict()
    state: dict[str, Tensor] = {}
    for module, layer in fit.modules.items():
        if layer not in blobs:
            raise WeightsError(
                f"{source}: no blobs for layer {layer!r}; is it the model of this prototxt?"
            )
        if len(blobs[layer]) != 2:
            raise WeightsError(
                f"{source}: layer {layer!r} has {len(blobs[layer])} blobs, expected weight, bias"
            )
        for blob, kind in zip(blobs[layer], ("weight", "bias"), strict=True):
            shape = expected[f"{module}.{kind}"].shape
            if blob.size != shape.numel():
                raise WeightsError(
                    f"{source}: layer {layer!r} {kind} has shape {tuple(blob.shape)}, "
                    f"{fit.graph.model} needs {tuple(shape)} (another input size?)"
                )
            array = np.ascontiguousarray(blob, dtype=np.float32)
            state[f"{module}.{kind}"] = torch.from_numpy(array).view(shape)
    return state


def import_caffe(prototxt: str | Path, caffemodel: str | Path) -> tuple[nn.Module, WeightsCard]:
    """The model a Caffe deploy `.prototxt` describes, holding the `.caffemodel`'s weights,
    and its card (Caffe's BGR 0-255 mean-subtracted input, the release's crop)."""
    prototxt, caffemodel = Path(prototxt), Path(caffemodel)
    if not caffemodel.is_file():
        raise WeightsError(f"{caffemodel}: no such .caffemodel file")
    fit = recognise_net(read_net(prototxt), str(prototxt))
    graph = fit.graph
    kwargs = {**graph.kwargs, **fit.arguments}
    blobs = read_caffemodel(caffemodel)
    state = _state(fit, blobs, kwargs, caffemodel)
    model = load_checked(graph.model, kwargs, state)
    unused = sorted(set(blobs) - set(fit.modules.values()))
    notes = []
    if unused:
        shown = ", ".join(unused[:6]) + (" ..." if len(unused) > 6 else "")
        notes.append(f"blobs of layers not in the prototxt left out: {shown}")
    card = WeightsCard.imported(
        graph.model,
        kwargs,
        graph.preprocessing,
        provenance={
            "source": str(caffemodel),
            "prototxt": str(prototxt),
            "kind": "Caffe deploy .prototxt and .caffemodel",
            "origin": f"a Caffe model with the graph of {graph.title}",
            "url": graph.url,
            "license": graph.license,
            "reported": graph.reported,
            "notes": [
                f"url, license and reported are those of the published {graph.title} weights",
                *notes,
            ],
        },
    )
    return model, card
