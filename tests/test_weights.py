"""Weights: our safetensors format (a round trip that never unpickles, errors for people),
the checked loader every importer goes through, and the BVLC Caffe import against a
.caffemodel written by an independent protobuf writer and against real photos. torchvision's
weights are in test_torchvision_weights.py."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.data import discover
from goingdeeper.data.imagenet import imagenet_classes
from goingdeeper.errors import WeightsError
from goingdeeper.images import load_image
from goingdeeper.weights import (
    WeightsCard,
    import_bvlc,
    load_checked,
    load_weights,
    read_caffemodel,
    read_card,
    save_weights,
)
from goingdeeper.weights.bvlc import caffe_layer_names


def test_save_and_load_roundtrip_never_unpickles(tmp_path, monkeypatch):
    model = gd.create_model("googlenet", num_classes=5, aux_logits=False).eval()
    card = WeightsCard(
        model="googlenet",
        model_kwargs={"num_classes": 5, "aux_logits": False},
        num_classes=5,
        class_names=list("abcde"),
        provenance={"source": "test"},
    )
    path = save_weights(model, card, tmp_path / "out" / "tiny")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    assert not list(path.parent.glob("*.tmp"))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("loading unpickled something")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded, card2 = load_weights(path)
    assert card2.class_names == list("abcde") and card2.preprocessing == card.preprocessing
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]  # a plain safetensors header
    assert b"goingdeeper.card" in path.read_bytes()[8 : 8 + header_len]


def test_load_errors_are_for_people(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_card(tmp_path / "bad.safetensors")
    model = gd.create_model("googlenet", num_classes=5, aux_logits=False)
    card = WeightsCard(
        model="googlenet", model_kwargs={"num_classes": 5, "aux_logits": False}, num_classes=5
    )
    path = save_weights(model, card, tmp_path / "five")
    with pytest.raises(WeightsError, match="fc.weight has shape"):
        load_weights(path, num_classes=7)


def test_checked_loader_names_what_does_not_fit():
    source = gd.create_model("lenet5", num_classes=10)
    state = source.state_dict()
    model = load_checked("lenet5", {"num_classes": 10}, state)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]) and value.data_ptr() != state[key].data_ptr(), key
    with pytest.raises(WeightsError, match=r"does not fit lenet5: missing \['C1.bias'\]"):
        load_checked("lenet5", {}, {k: v for k, v in state.items() if k != "C1.bias"})
    with pytest.raises(WeightsError, match=r"unexpected \['extra.weight'\]"):
        load_checked("lenet5", {}, {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"F6.weight has shape \(84, 12\), lenet5 expects"):
        load_checked("lenet5", {}, {**state, "F6.weight": torch.zeros(84, 12)})
    # parts under a `fresh` prefix may be absent: they keep their initialisation
    partial = {k: v for k, v in state.items() if not k.startswith("F6.")}
    model = load_checked("lenet5", {}, partial, fresh=("F6.",))
    assert torch.equal(model.C5.weight, state["C5.weight"])
    assert not torch.equal(model.F6.weight, state["F6.weight"])


# --- Caffe ---------------------------------------------------------------------------------------
# A tiny protobuf writer, independent of the reader under test, for .caffemodel files.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int, wire: int = 2) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload


def _blob(arr: np.ndarray, legacy: bool) -> bytes:
    data = _field(5, arr.astype("<f4").tobytes())
    if legacy:  # V1 files: num, channels, height, width
        dims = (1,) * (4 - arr.ndim) + arr.shape
        return b"".join(_field(i + 1, d, wire=0) for i, d in enumerate(dims)) + data
    shape = _field(1, b"".join(_varint(d) for d in arr.shape))
    return _field(7, shape) + data


def write_caffemodel(path: Path, layers: dict[str, list[np.ndarray]], legacy: bool = False) -> None:
    msg = _field(1, b"GoogleNet")
    for name, blobs in layers.items():
        if legacy:  # V1LayerParameter in NetParameter.layers (2): name 4, type 5, blobs 6
            body = _field(4, name.encode()) + _field(5, 4, wire=0)
            body += b"".join(_field(6, _blob(b, True)) for b in blobs)
            msg += _field(2, body)
        else:  # LayerParameter in NetParameter.layer (100): name 1, type 2, blobs 7
            body = _field(1, name.encode()) + _field(2, b"Convolution")
            body += b"".join(_field(7, _blob(b, False)) for b in blobs)
            msg += _field(100, body)
    path.write_bytes(msg)


def _caffe_layers_of(model: nn.Module) -> dict[str, list[np.ndarray]]:
    modules = dict(model.named_modules())
    return {
        caffe: [modules[ours].weight.detach().numpy(), modules[ours].bias.detach().numpy()]
        for caffe, ours in caffe_layer_names().items()
        if ours in modules
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "v1-layers"])
def test_caffemodel_import_with_aux_heads(tmp_path, legacy):
    source = gd.create_model("googlenet", aux_logits=True)
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, _caffe_layers_of(source), legacy=legacy)
    layers = read_caffemodel(path)
    assert layers["inception_4a/5x5"][0].shape == (48, 16, 5, 5)
    model, card = import_bvlc(path, aux_logits=True)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert card.provenance["notes"] == [] and card.preprocessing.channel_order == "BGR"


def test_caffemodel_errors(tmp_path):
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xff\xff")
    with pytest.raises(WeightsError):
        import_bvlc(tmp_path / "junk.caffemodel")
    with pytest.raises(WeightsError, match="no such"):
        import_bvlc(tmp_path / "missing.caffemodel")


def test_bvlc_blob_folder_equals_caffemodel(shared_data, tmp_path):
    folder_model, card = import_bvlc(shared_data / "bvlc-googlenet")
    assert card.provenance["notes"] == []
    write_caffemodel(tmp_path / "bvlc.caffemodel", _caffe_layers_of(folder_model))
    file_model, _ = import_bvlc(tmp_path / "bvlc.caffemodel")
    x = torch.randn(1, 3, 224, 224) * 50
    with torch.no_grad():
        torch.testing.assert_close(file_model(x), folder_model(x), rtol=0, atol=0)
    with_aux, card = import_bvlc(shared_data / "bvlc-googlenet", aux_logits=True)
    assert with_aux.aux1 is not None and "freshly initialised" in card.provenance["notes"][0]


@pytest.mark.slow
def test_bvlc_accuracy_on_real_photos(shared_data):
    """BVLC GoogLeNet, shorter side 256, center crop 224, on every other one of the 1,000
    ImageNet sample photos (one per class), each labelled by the WordNet id in its name.
    The whole sample's figures are benchmarks/results/eval_imagenet_sample.md's."""
    model, card = import_bvlc(shared_data / "bvlc-googlenet")
    photos = discover(shared_data / "imagenet-sample", known=imagenet_classes())
    samples = photos.split("all").samples
    assert len(samples) == 1000
    samples = samples[::2]
    top1 = top5 = 0
    for start in range(0, len(samples), 50):
        batch = samples[start : start + 50]
        x = torch.stack([card.preprocessing(load_image(f)) for f, _ in batch])
        with torch.inference_mode():
            top = model(x).topk(5, dim=1).indices
        labels = torch.tensor([label for _, label in batch])
        top1 += (top[:, 0] == labels).sum().item()
        top5 += (top == labels[:, None]).any(1).sum().item()
    assert top1 >= 365 and top5 >= 455, (top1, top5)  # measured: 377 and 461
