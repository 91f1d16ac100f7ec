"""Weights: torchvision and BVLC Caffe imports against their oracles; our safetensors format."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import WeightsError
from goingdeeper.images import load_image
from goingdeeper.models.googlenet import caffe_layer_names as googlenet_name_map
from goingdeeper.preprocess import TORCHVISION_GOOGLENET, Preprocessing
from goingdeeper.weights import (
    WeightsCard,
    import_bvlc,
    import_torchvision,
    load_weights,
    read_caffemodel,
    read_card,
    save_weights,
)


def _torchvision_googlenet(**kwargs) -> nn.Module:
    torch.manual_seed(1)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, **kwargs)
    for m in model.modules():  # non-trivial BatchNorm statistics, so that they are tested too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def test_torchvision_import_same_outputs_in_eval():
    theirs = _torchvision_googlenet(transform_input=False).eval()
    ours, card = import_torchvision(theirs)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff <= 1e-5
    assert card.model == "googlenet_torchvision" and len(card.class_names) == 1000


def test_torchvision_import_same_aux_outputs_in_training():
    theirs = _torchvision_googlenet(transform_input=False)
    ours, _ = import_torchvision(theirs)
    for model in (theirs, ours):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    x = torch.randn(2, 3, 224, 224)
    a, b = theirs(x), ours(x)
    assert (a.logits - b.logits).abs().max() <= 1e-5
    assert (a.aux_logits1 - b.aux1).abs().max() <= 1e-5  # both on inception 4a
    assert (a.aux_logits2 - b.aux2).abs().max() <= 1e-5  # both on inception 4d


def test_torchvision_input_transform_is_explicit_preprocessing():
    """torchvision hides (x - 0.5) / 0.5 in the model; our card states it instead."""
    theirs = _torchvision_googlenet(transform_input=True).eval()
    ours, card = import_torchvision(theirs)
    assert card.preprocessing == TORCHVISION_GOOGLENET
    rng = np.random.default_rng(0)
    from PIL import Image

    img = Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8))
    imagenet = Preprocessing()  # what torchvision's transform_input expects to be fed
    with torch.no_grad():
        expected = theirs(imagenet(img).unsqueeze(0))
        got = ours(card.preprocessing(img).unsqueeze(0))
    assert (expected - got).abs().max() <= 1e-4


def test_torchvision_import_from_pth_file(tmp_path):
    theirs = _torchvision_googlenet().eval()
    torch.save(theirs.state_dict(), tmp_path / "googlenet.pth")
    ours, _ = import_torchvision(tmp_path / "googlenet.pth")
    assert ours.aux1 is not None
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        import_torchvision(tmp_path / "junk.pth")


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
        for caffe, ours in googlenet_name_map().items()
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
    """BVLC GoogLeNet, shorter side 256, center crop 224, on 1,000 ImageNet photos."""
    model, card = import_bvlc(shared_data / "bvlc-googlenet")
    files = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))
    assert len(files) == 1000
    top1 = top5 = 0
    for start in range(0, len(files), 50):
        batch = files[start : start + 50]
        x = torch.stack([card.preprocessing(load_image(f)) for f in batch])
        with torch.inference_mode():
            top = model(x).topk(5, dim=1).indices
        labels = torch.arange(start, start + len(batch))
        top1 += (top[:, 0] == labels).sum().item()
        top5 += (top == labels[:, None]).any(1).sum().item()
    assert top1 >= 740 and top5 >= 920, (top1, top5)
