"""BVLC Caffe GoogLeNet weights: from a `.caffemodel` file or from a folder of raw blobs.

A `.caffemodel` is a serialized `NetParameter` protobuf. Only the few fields that carry
weights are read, straight from the protobuf wire format, so neither Caffe nor its compiled
`caffe.proto` is needed:

    NetParameter      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter, old files)
    LayerParameter    name = 1, type = 2, blobs = 7
    V1LayerParameter  name = 4, blobs = 6
    BlobProto         num, channels, height, width = 1..4 (old shape), data = 5 (float),
                      shape = 7 (BlobShape: dim = 1), double_data = 8

The blob folder (`<layer>/<blob>_filter.bin`, `_bias.bin`, raw little-endian float32, filters
stored out x kh x kw x in) is how the BVLC weights are often shared without Caffe.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..models.googlenet import GoogLeNet
from ..preprocess import CAFFE_BGR
from ..registry import build_shell
from .format import WeightsCard
from .loading import load_checked

BVLC_URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"

# --- protobuf wire format -----------------------------------------------------------------------


# BVLC's Caffe blob names -> ours: `<caffe layer>` -> `<module>` (its .weight and .bias)
_CAFFE_INCEPTION = {
    "1x1": "branch1x1.conv",
    "3x3_reduce": "branch3x3.reduce.conv",
    "3x3": "branch3x3.conv.conv",
    "5x5_reduce": "branch5x5.reduce.conv",
    "5x5": "branch5x5.conv.conv",
    "pool_proj": "branch_pool.proj.conv",
}


def caffe_layer_names() -> dict[str, str]:
    """Caffe layer name -> our module name, for the BVLC GoogLeNet (aux heads included)."""
    names = {
        "conv1/7x7_s2": "conv1.conv",
        "conv2/3x3_reduce": "conv2_reduce.conv",
        "conv2/3x3": "conv2.conv",
        "loss3/classifier": "fc",
    }
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for blob, ours in _CAFFE_INCEPTION.items():
            names[f"inception_{block}/{blob}"] = f"inception{block}.{ours}"
    for caffe_head, ours in (("loss1", "aux1"), ("loss2", "aux2")):
        names[f"{caffe_head}/conv"] = f"{ours}.conv.conv"
        names[f"{caffe_head}/fc"] = f"{ours}.fc1"
        names[f"{caffe_head}/classifier"] = f"{ours}.fc2"
    return names


MAX_VARINT_BYTES = 10  # 64 bits in 7-bit groups: protobuf writes no longer varint
MAX_BLOB_DIMS = 8  # Caffe's blobs have at most 4 axes (BlobShape allows 32)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
        if pos >= len(buf):
            raise WeightsError("truncated protobuf (a varint runs past the end)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
    raise WeightsError(f"not a protobuf message (a varint longer than {MAX_VARINT_BYTES} bytes)")


def iter_fields(buf: memoryview):
    """Yield (field number, wire type, value) of one protobuf message; length-delimited values
    are memoryviews into `buf`, 32- and 64-bit values their raw 4 or 8 bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):  # fixed 64 or 32 bits
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise WeightsError("truncated protobuf (a fixed-width field runs past the end)")
            value, pos = buf[pos : pos + width], pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise WeightsError("truncated protobuf (a field runs past the end)")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise WeightsError(f"not a protobuf message (wire type {wire} at byte {pos})")
        yield number, wire, value


def _packed_ints(wire: int, value) -> list[int]:
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _values(value, wire: int, dtype: str) -> np.ndarray:
    """Packed (wire 2) or single (wire 5 or 1) floats of `dtype`, checked for whole values."""
    width = np.dtype(dtype).itemsize
    if wire == 0 or len(value) % width:
        raise WeightsError(f"a blob's data is {len(value)} bytes, not whole {width}-byte values")
    return np.frombuffer(bytes(value), dtype=dtype)


def _blob(buf: memoryview) -> np.ndarray:
    legacy: dict[int, int] = {}
    dims: list[int] = []
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for number, wire, value in iter_fields(buf):
        if number in (1, 2, 3, 4) and wire == 0:
            legacy[number] = value
        elif number == 5:  # data: packed (wire 2) or one float per field (wire 5)
            floats.append(_values(value, wire, "<f4"))
        elif number == 8:
            doubles.append(_values(value, wire, "<f8"))
        elif number == 7 and wire == 2:
            for n, w, v in iter_fields(value):
                if n == 1:
                    dims.extend(_packed_ints(w, v))
                if len(dims) > MAX_BLOB_DIMS:
                    raise WeightsError(f"a blob with over {MAX_BLOB_DIMS} axes")
    data = (
        np.concatenate(floats)
        if floats
        else (np.concatenate(doubles).astype(np.float32) if doubles else np.zeros(0, np.float32))
    )
    if not dims:
        dims = [legacy.get(i, 1) for i in (1, 2, 3, 4)]
    if math.prod(dims) != data.size:  # Python integers: a product of huge dims cannot wrap
        raise WeightsError(f"a blob of shape {dims} holds {data.size} values")
    return data.reshape(dims)


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """{layer name: [blobs]} for every layer that has weights, in file order."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such .caffemodel file")
    buf = memoryview(path.read_bytes())
    layers: dict[str, list[np.ndarray]] = {}
    try:
        for number, wire, value in iter_fields(buf):
            if wire != 2 or number not in (2, 100):
                continue
            name_field, blob_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = None, []
            for n, w, v in iter_fields(value):
                if n == name_field and w == 2:
                    name = bytes(v).decode("utf-8")
                elif n == blob_field and w == 2:
                    blobs.append(_blob(v))
            if name and blobs:
                layers[name] = blobs
    except UnicodeDecodeError:
        raise WeightsError(f"{path}: not a .caffemodel (a layer name is not text)") from None
    if not layers:
        raise WeightsError(f"{path}: no layers with weights; is it a .caffemodel?")
    return layers


# --- the BVLC GoogLeNet ----------------------------------------------------------------------


def read_blob_folder(
    folder: str | Path, expected: dict[str, Tensor]
) -> dict[str, list[np.ndarray]]:
    """{Caffe layer name: [weight, bias]} from a folder of raw blobs, the weights shaped like
    the `expected` state dict's (our names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: no such folder of BVLC blobs")
    root = folder / "weights" if (folder / "weights").is_dir() else folder
    layers: dict[str, list[np.ndarray]] = {}
    for caffe, ours in caffe_layer_names().items():
        group, blob = caffe.split("/")
        wfile, bfile = root / group / f"{blob}_filter.bin", root / group / f"{blob}_bias.bin"
        if not wfile.exists() or f"{ours}.weight" not in expected:
            continue
        weight = np.fromfile(wfile, dtype="<f4")
        bias = np.fromfile(bfile, dtype="<f4")
        shape = tuple(expected[f"{ours}.weight"].shape)
        if weight.size != int(np.prod(shape)):
            raise WeightsError(f"{wfile}: {weight.size} values, {ours} needs {shape}")
        if len(shape) == 4:  # stored out x kh x kw x in
            out_c, in_c, kh, kw = shape
            weight = weight.reshape(out_c, kh, kw, in_c).transpose(0, 3, 1, 2)
        layers[caffe] = [weight.reshape(shape), bias]
    if not layers:
        raise WeightsError(f"{folder}: no BVLC blobs found (expected conv1/7x7_s2_filter.bin ...)")
    return layers


def caffe_state(
    layers: dict[str, list[np.ndarray]], expected: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Caffe blobs under our keys (`<module>.weight`, `<module>.bias`), shaped as `expected`;
    the layers `expected` has no module for (aux heads not built) are left out."""
    state: dict[str, Tensor] = {}
    for caffe, ours in caffe_layer_names().items():
        if caffe not in layers or f"{ours}.weight" not in expected:
            continue
        for blob, kind in zip(layers[caffe], ("weight", "bias"), strict=False):
            shape = expected[f"{ours}.{kind}"].shape
            if blob.size != shape.numel():
                raise WeightsError(
                    f"{caffe}: shape {blob.shape} does not fit {ours}.{kind} {tuple(shape)} "
                    "(another num_classes?)"
                )
            state[f"{ours}.{kind}"] = torch.from_numpy(np.ascontiguousarray(blob)).view(shape)
    return state


def import_bvlc(source: str | Path, *, aux_logits: bool = False) -> tuple[nn.Module, WeightsCard]:
    """The BVLC GoogLeNet as our `googlenet`, from a .caffemodel or a blob folder.

    The blob folder holds the main head only; with `aux_logits=True` its aux heads are freshly
    initialised, and the card says so. A .caffemodel carries them (loss1/*, loss2/*).
    """
    source = Path(source)
    expected = build_shell("googlenet", aux_logits=aux_logits).state_dict()
    if source.is_dir():
        layers, kind = read_blob_folder(source, expected), "BVLC blob folder"
    elif source.is_file():
        layers, kind = read_caffemodel(source), ".caffemodel"
    else:
        raise WeightsError(
            f"{source}: no such file or folder; give bvlc_googlenet.caffemodel "
            f"({BVLC_URL}) or a folder of BVLC blobs"
        )
    state = caffe_state(layers, expected)
    aux = tuple(f"{head}." for head in GoogLeNet.aux_heads)
    absent = sorted({k.rpartition(".")[0] for k in expected if k not in state})
    main_missing = [m for m in absent if not m.startswith(aux)]
    if main_missing:
        raise WeightsError(
            f"{source}: no weights for {', '.join(main_missing[:4])}"
            f"{' ...' if len(main_missing) > 4 else ''}"
        )
    fresh = [k for k in expected if k not in state]
    model = load_checked("googlenet", {"aux_logits": aux_logits}, state, fresh=aux)
    notes = ["aux heads freshly initialised (the source has no loss1/loss2 blobs)"] if fresh else []
    return model, _card(source, kind, aux_logits, notes)


def _card(source: Path, kind: str, aux_logits: bool, notes: list[str]) -> WeightsCard:
    return WeightsCard.imported(
        "googlenet",
        {"aux_logits": aux_logits},
        CAFFE_BGR,
        provenance={
            "source": str(source),
            "kind": kind,
            "origin": "BVLC GoogLeNet (Caffe model zoo)",
            "url": BVLC_URL,
            "license": "unrestricted use (BVLC model zoo)",
            "reported": "68.7% top-1, 88.9% top-5 (ILSVRC 2012 val, center crop)",
            "notes": notes,
        },
    )
