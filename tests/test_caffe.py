"""Caffe models of the line (`weights import caffe`), checked against OpenCV's Caffe reader.

The oracle: for each published prototxt in tests/data/caffe (README there: source and
licence), a `.caffemodel` of seeded random weights is written by the small protobuf encoder
below, then run by OpenCV's dnn module (`cv2.dnn.readNetFromCaffe`, code that no one here
wrote) and by our import, on the same input; the logits agree to 1e-4 of their scale. That
checks our Caffe semantics: ceil-mode pools, LRN across channels, grouped convolutions, the
Inception concatenation order, dropout at test time, the flattening before fc6.

To keep them cheap the FC layers are narrowed in the prototxt text (4096 -> 64 wide, 1000 ->
10 classes): the same graph with fewer weights. The input stays at each release's size (227,
224): fc6 is sized to the last map, GoogLeNet's and NIN's final pools are a fixed 7x7 and 6x6.
NIN was published as a train_val only: our import reads it as such, and OpenCV, which builds
no data, accuracy or loss layers, gets its deploy form cut from it (`deploy_for_opencv`).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2  # opencv-python-headless<5, in the dev extra: the independent reader of Caffe files
import numpy as np
import pytest
import torch
from PIL import Image

import goingdeeper as gd
from goingdeeper.cli import main
from goingdeeper.errors import WeightsError
from goingdeeper.registry import build_shell
from goingdeeper.weights import import_bvlc, import_caffe, load_weights, read_caffemodel
from goingdeeper.weights.bvlc import read_blob_folder
from goingdeeper.weights.caffe import read_net, recognise_net
from goingdeeper.weights.prototxt import MAX_DEPTH, parse_prototxt

DATA = Path(__file__).parent / "data" / "caffe"
# file: (model, the layer whose output is the logits, input size)
PUBLISHED = {
    "bvlc_alexnet.prototxt": ("alexnet", "fc8", 227),
    "bvlc_reference_caffenet_v1.prototxt": ("caffenet", "fc8", 227),
    "vgg_ilsvrc_16_layers.prototxt": ("vgg_d", "fc8", 224),
    "bvlc_googlenet.prototxt": ("googlenet", "loss3/classifier", 224),
    "nin_imagenet_train_val.prototxt": ("nin_imagenet", "pool4", 224),  # NIN released no deploy
}
BVLC_LRN = {"lrn_alpha": 1e-4, "lrn_k": 1.0}
ARGUMENTS = {
    "alexnet": {**BVLC_LRN, "fc_width": 4096, "num_classes": 1000},
    "caffenet": {**BVLC_LRN, "fc_width": 4096, "num_classes": 1000},
    "vgg_d": {"fc_width": 4096, "num_classes": 1000},
    "vgg_e": {"fc_width": 4096, "num_classes": 1000},
    "googlenet": {"num_classes": 1000},
    "nin_imagenet": {"num_classes": 1000},
}
WIDTH, CLASSES = 64, 10


# --- a protobuf encoder of just what a .caffemodel needs ----------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _message(number: int, body: bytes) -> bytes:
    return _field(number, 2, _varint(len(body)) + body)


def _blob(array: np.ndarray, legacy: bool) -> bytes:
    """BlobProto: old files give num, channels, height, width (1-4); newer a BlobShape (7)."""
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        shape = b"".join(_field(i, 0, _varint(d)) for i, d in enumerate(dims, start=1))
    else:
        shape = _message(7, _message(1, b"".join(_varint(d) for d in array.shape)))
    return shape + _message(5, array.astype("<f4").tobytes())


def caffemodel(layers: dict[str, list[np.ndarray]], v1: bool) -> bytes:
    """A NetParameter: V2 `layer` (100: name 1, type 2, blobs 7) or V1 `layers` (2: name 4,
    type 5 as an enum, blobs 6) with legacy 4-d blob shapes, as old files have them."""
    out = _message(1, b"caffemodel of random weights")
    for name, blobs in layers.items():
        kind = "Convolution" if blobs[0].ndim == 4 else "InnerProduct"
        if v1:
            body = _message(4, name.encode()) + _field(
                5, 0, _varint(4 if blobs[0].ndim == 4 else 14)
            )
            body += b"".join(_message(6, _blob(b, legacy=True)) for b in blobs)
            out += _message(2, body)
        else:
            body = _message(1, name.encode()) + _message(2, kind.encode())
            body += b"".join(_message(7, _blob(b, legacy=False)) for b in blobs)
            out += _message(100, body)
    return out


# --- the published graphs ------------------------------------------------------------------------


def narrowed(name: str, folder: Path) -> Path:
    """The published prototxt with its FC layers narrowed (see the module's docstring)."""
    text = (DATA / name).read_text()
    assert text.count("num_output: 1000") == 1
    text = text.replace("num_output: 4096", f"num_output: {WIDTH}")
    text = text.replace("num_output: 1000", f"num_output: {CLASSES}")
    path = folder / name
    path.write_text(text)
    return path


def random_weights(prototxt: Path, size: int, seed: int) -> dict[str, list[np.ndarray]]:
    """He-scaled random weights and random biases for every weighted layer, shaped as our
    model's tensors (OpenCV checks them against the prototxt's layers when it runs them)."""
    rng = np.random.default_rng(seed)
    fit = recognise_net(read_net(prototxt))
    kwargs = {**fit.graph.kwargs, **fit.arguments}
    shapes = build_shell(fit.graph.model, **kwargs).state_dict()
    blobs = {}
    for module, layer in fit.modules.items():
        shape = tuple(shapes[f"{module}.weight"].shape)
        fan_in = int(np.prod(shape[1:]))
        weight = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))
        bias = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.1)
        blobs[layer] = [weight, bias]
    return blobs


def deploy_for_opencv(prototxt: Path, size: int) -> Path:
    """A train_val cut to its deploy form for OpenCV, which builds no data, accuracy or loss
    layer: those layers out, an `input` header in (V1 files: top-level `layers` blocks)."""
    text = prototxt.read_text()
    if "type: DATA" not in text:
        return prototxt
    head, *blocks = text.split("\nlayers {")
    kept = [
        b
        for b in blocks
        if not any(f"type: {t}\n" in b for t in ("DATA", "ACCURACY", "SOFTMAX_LOSS"))
    ]
    dims = "".join(f"input_dim: {d}\n" for d in (1, 3, size, size))
    path = prototxt.with_name("deploy_" + prototxt.name)
    path.write_text(f'{head}\ninput: "data"\n{dims}' + "".join("layers {" + b for b in kept))
    return path


def opencv_logits(prototxt: Path, model: Path, x: np.ndarray, layer: str) -> np.ndarray:
    cv2.setNumThreads(1)
    prototxt = deploy_for_opencv(prototxt, x.shape[-1])
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(model))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)  # its 3x3 kernels round differently; plain convolution here
    net.setInput(x)
    return net.forward(layer)


@pytest.fixture(scope="module")
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# VGG-19 is recognised, not run: Table 1's E is VGG-16's D with a fourth conv in blocks 3-5
RECOGNISED = {**{name: model for name, (model, _, _) in PUBLISHED.items()},
              "vgg_ilsvrc_19_layers.prototxt": "vgg_e"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECOGNISED))
def test_published_graphs_are_recognised(name):
    model = RECOGNISED[name]
    fit = recognise_net(read_net(DATA / name))
    assert fit.graph.model == model
    assert fit.arguments == ARGUMENTS[model]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_outputs_agree_with_opencv(name, tmp_path, threads):
    model_name, logits_layer, size = PUBLISHED[name]
    prototxt = narrowed(name, tmp_path)
    blobs = random_weights(prototxt, size, seed=len(name))
    path = tmp_path / "random.caffemodel"
    v1 = "\nlayers {" in prototxt.read_text()  # old files' weights in the old form too
    path.write_bytes(caffemodel(blobs, v1=v1))
    # mean-subtracted pixels: values of tens, where Caffe's LRN (alpha 1e-4) bites
    x = np.random.default_rng(0).uniform(-100, 100, (1, 3, size, size)).astype(np.float32)

    theirs = opencv_logits(prototxt, path, x, logits_layer).reshape(1, -1)
    model, card = import_caffe(prototxt, path)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()

    assert card.model == model_name and card.num_classes == CLASSES
    p = card.preprocessing  # Caffe's input, at the crop of the release
    assert (p.channel_order, p.scale, p.std, p.crop) == ("BGR", 1.0, (1.0, 1.0, 1.0), size)
    assert ours.shape == theirs.shape == (1, CLASSES)
    scale = np.abs(theirs).max()
    assert scale > 1.0  # the weights carried a signal through every layer
    assert np.abs(ours - theirs).max() <= 1e-4 * scale


def test_the_oracle_tells_caffenet_from_alexnet(tmp_path, threads):
    """CaffeNet's weights in AlexNet's order (LRN before pool) give other logits: the
    tolerance above is tight enough to see the order of two layers."""
    name = "bvlc_reference_caffenet_v1.prototxt"
    prototxt = narrowed(name, tmp_path)
    path = tmp_path / "random.caffemodel"
    path.write_bytes(caffemodel(random_weights(prototxt, 227, seed=1), v1=True))
    x = np.random.default_rng(0).uniform(-100, 100, (1, 3, 227, 227)).astype(np.float32)
    theirs = opencv_logits(prototxt, path, x, "fc8").reshape(1, -1)
    model, card = import_caffe(prototxt, path)
    swapped = gd.create_model("alexnet", **{**card.model_kwargs, "ceil_pools": True})
    swapped.load_state_dict(model.state_dict())
    with torch.no_grad():
        other = swapped.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(other - theirs).max() > 1e-2 * np.abs(theirs).max()


def test_import_writes_weights_and_card(tmp_path, capsys, threads):
    prototxt = narrowed("bvlc_alexnet.prototxt", tmp_path)
    path = tmp_path / "random.caffemodel"
    blobs = random_weights(prototxt, 227, seed=3)
    blobs["loss1/fc"] = [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)]
    path.write_bytes(caffemodel(blobs, v1=False))
    out = tmp_path / "alexnet"
    assert main(["weights", "import", "caffe", str(prototxt), str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alexnet" in printed and "loss1/fc" in printed  # the unused blobs are named
    model, card = load_weights(out.with_suffix(".safetensors"))
    p = card.preprocessing
    assert (p.channel_order, p.scale, p.crop, p.mean) == ("BGR", 1.0, 227, (104.0, 117.0, 123.0))
    assert card.model_kwargs == {
        "ceil_pools": True,
        **BVLC_LRN,
        "fc_width": WIDTH,
        "num_classes": 10,
    }
    conv2 = blobs["conv2"][0]
    assert torch.equal(model.conv2.conv.weight, torch.from_numpy(conv2))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("group: 2", "group: 1", "layer 6 'conv2' (Convolution"),
        ("kernel_size: 11", "kernel_size: 7", "layer 2 'conv1'"),
        ('type: "LRN"', 'type: "ReLU"', "layer 4 'norm1' (ReLU"),
        ('bottom: "pool2"', 'bottom: "norm2"', "layer 10 'conv3' (Convolution"),
    ],
)
def test_a_graph_of_none_names_its_first_misfit(old, new, message, tmp_path):
    text = (DATA / "bvlc_alexnet.prototxt").read_text()
    assert old in text
    path = tmp_path / "other.prototxt"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(WeightsError, match="not a Caffe graph of alexnet") as info:
        recognise_net(read_net(path), str(path))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_kernel_h_and_w_are_a_square_kernel(tmp_path):
    text = (DATA / "bvlc_alexnet.prototxt").read_text()
    square = tmp_path / "square.prototxt"
    square.write_text(text.replace("kernel_size: 11", "kernel_h: 11 kernel_w: 11", 1))
    assert recognise_net(read_net(square)).graph.model == "alexnet"
    oblong = tmp_path / "oblong.prototxt"
    oblong.write_text(text.replace("kernel_size: 11", "kernel_h: 11 kernel_w: 9", 1))
    with pytest.raises(WeightsError, match=r"'conv1' \(Convolution .*kernel \(11, 9\)"):
        recognise_net(read_net(oblong))


def test_mangled_network_files_fail_in_one_line(tmp_path):
    """Seeded random cuts and byte changes of a published file: each is read and recognised,
    or refused with a `WeightsError`; nothing else escapes."""
    text = (DATA / "bvlc_alexnet.prototxt").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "mangled.prototxt"
    refused = 0
    for _ in range(150):
        data = bytearray(text)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(len(data)))
            if rng.random() < 0.5:
                del data[at : at + int(rng.integers(1, 40))]
            else:
                data[at] = int(rng.choice(list(b'{}:"#x9 \n\xff')))
        path.write_bytes(bytes(data))
        try:
            recognise_net(read_net(path))
        except WeightsError as e:
            refused += 1
            assert "\n" not in str(e)
    assert refused > 100  # most changes break the file or the graph


@pytest.mark.parametrize(
    "text, message",
    [
        ('input: "data" input_dim: "ten" layer { name: "x" }', "not all counts"),
        ("name: 'no layers'", "no layers"),
        ("layer: 5", "layer 1 is not a message"),
    ],
)
def test_network_file_mistakes(text, message, tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(WeightsError, match=message):
        read_net(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (("caffe", "{p}", "--out", "w"), "give a .caffemodel after the .prototxt"),
        (("caffe", "{p}", "missing.caffemodel", "--out", "w"), "no such .caffemodel"),
        (("caffe", "missing.prototxt", "{m}", "--out", "w"), "no such .prototxt"),
        (("bvlc", "{m}", "{m}", "--out", "w"), "the second is for `import caffe`"),
        (("caffe", "{m}", "{m}", "--out", "w"), "not a text file"),
    ],
)
def test_import_mistakes_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    model = tmp_path / "x.caffemodel"
    model.write_bytes(b"\xff\xfe" * 8)
    p, m = str(DATA / "bvlc_alexnet.prototxt"), str(model)
    argv = ["weights", "import", *(a.format(p=p, m=m) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# --- the readers' bounds ---------------------------------------------------------------------


def test_prototxt_text_format():
    text = """# a comment
    name: "a \\"quoted\\" " 'name'  # strings, escaped, concatenated
    layer { type: CONVOLUTION p { k: 3 k: 5 alpha: 1e-4 on: true } }
    layer < type: "Pooling" >
    """
    message = parse_prototxt(text)
    assert message["name"] == ['a "quoted" name']
    first, second = message["layer"]
    assert first == {"type": ["CONVOLUTION"], "p": [{"k": [3, 5], "alpha": [1e-4], "on": [True]}]}
    assert second == {"type": ["Pooling"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("layer {\n name: 'x'", "line 2: the text ends inside a message"),
        ("a b", "line 1: expected ':' or '{' after 'a'"),
        ("a: }", "expected a value for 'a'"),
        ("}", "expected a field name"),
        ('a: "x', "unexpected character"),
        ("a: \x00", "unexpected character"),
        ('a: "\\q"', "unknown escape"),
        ("a {" * (MAX_DEPTH + 2), f"nested over {MAX_DEPTH} deep"),
    ],
)
def test_prototxt_mistakes(text, message):
    with pytest.raises(WeightsError, match=message):
        parse_prototxt(text)


def test_prototxt_stops_at_the_first_mistake():
    start = time.process_time()
    with pytest.raises(WeightsError, match="line 1: expected a field name"):
        parse_prototxt("{" * 10_000_000)  # read token by token: the first one is wrong
    assert time.process_time() - start < 1.0


def _layer_with_blob(blob: bytes) -> bytes:
    return _message(100, _message(1, b"conv1") + _message(7, blob))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x08" + b"\xff" * 1_000_000, "a varint longer than 10 bytes"),
        (b"\x0d\x00\x00", "a fixed-width field runs past the end"),
        (b"\x09" + b"\x00" * 7, "a fixed-width field runs past the end"),
        (_layer_with_blob(_message(5, b"\x00" * 6)), "not whole 4-byte values"),
        (
            _layer_with_blob(
                _message(7, _message(1, _varint(2**62) + _varint(2**62) + _varint(4)))
                + _message(5, b"\x00" * 16)
            ),
            "holds 4 values",
        ),
        (_layer_with_blob(_message(7, _message(1, _varint(1) * 9))), "over 8 axes"),
    ],
    ids=["long-varint", "short-fixed32", "short-fixed64", "partial-float", "huge-dims", "9-axes"],
)
def test_caffemodel_reader_is_bounded(payload, message, tmp_path):
    path = tmp_path / "hostile.caffemodel"
    path.write_bytes(payload)
    start = time.process_time()
    with pytest.raises(WeightsError, match=message):
        read_caffemodel(path)
    assert time.process_time() - start < 1.0


def test_mangled_caffemodels_fail_in_one_line(tmp_path):
    """Seeded random byte changes of a small .caffemodel (both forms): read, or refused with a
    `WeightsError`; nothing else escapes."""
    blobs = {"conv": [np.ones((4, 3, 2, 2), np.float32), np.zeros(4, np.float32)]}
    rng = np.random.default_rng(1)
    path = tmp_path / "mangled.caffemodel"
    refused = 0
    for i in range(300):
        data = bytearray(caffemodel(blobs, v1=bool(i % 2)))
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path.write_bytes(bytes(data))
        try:
            read_caffemodel(path)
        except WeightsError as e:
            refused += 1
            assert "\n" not in str(e)
    assert refused > 50


@pytest.mark.parametrize("v1", [False, True])
def test_caffemodel_reader_reads_both_forms(v1, tmp_path):
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    bias = np.array([0.5, -1.0], np.float32)
    path = tmp_path / "small.caffemodel"
    path.write_bytes(caffemodel({"conv": [weight, bias]}, v1=v1))
    got_weight, got_bias = read_caffemodel(path)["conv"]
    assert np.array_equal(got_weight, weight)
    assert np.array_equal(got_bias.reshape(-1), bias)  # legacy shapes are 4-d: 1 x 1 x 1 x 2


# --- the real BVLC GoogLeNet ------------------------------------------------------------------


def test_real_bvlc_googlenet_agrees_with_opencv(shared_data, tmp_path, threads):
    """BVLC's own GoogLeNet weights (the shared blob folder), written as a .caffemodel: OpenCV
    and our import give the same logits on a real photo, and the same tensors as `import
    bvlc`, which reads the blob folder itself."""
    folder = shared_data / "bvlc-googlenet"
    bvlc_model, _ = import_bvlc(folder)
    expected = bvlc_model.state_dict()
    blobs = read_blob_folder(folder, expected)
    path = tmp_path / "bvlc_googlenet.caffemodel"
    path.write_bytes(caffemodel(blobs, v1=False))
    prototxt = folder / "deploy.prototxt"

    model, card = import_caffe(prototxt, path)
    photo = shared_data / "imagenet-sample" / "n01443537_goldfish.JPEG"
    x = card.preprocessing(Image.open(photo).convert("RGB")).unsqueeze(0)
    theirs = opencv_logits(prototxt, path, x.numpy(), "loss3/classifier").reshape(1, -1)
    with torch.no_grad():
        ours = model(x).numpy()

    assert card.model == "googlenet" and card.preprocessing.crop == 224
    assert all(torch.equal(t, expected[k]) for k, t in model.state_dict().items())
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert card.class_names[int(ours.argmax())] == "goldfish"
