"""Speed and deployment: the fused inference form of every registered model against the plain
model, BatchNorm folding numerics, the fused 1x1 convolutions in training, ONNX export checked
by ONNX Runtime for every model, the CLI, and int8 accuracy on real photos. The timing
harness is in test_benchmarks.py.

Cheap by design: random models run at their smallest legal input (32x32 for most), one
intra-op thread per worker; the real-data tests (BVLC GoogLeNet on imagenet-sample) are
marked slow.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.cli import main
from goingdeeper.inference import (
    FusedInception,
    conv_bn_pairs,
    fold_batchnorm,
    fold_bn_into_conv,
    fuse_inception_1x1,
    onnx_program,
    optimize_for_inference,
    unfuse_inception_1x1,
    write_torchscript,
)
from goingdeeper.models.inception import Inception
from goingdeeper.preprocess import Preprocessing
from goingdeeper.registry import build_model
from goingdeeper.weights import WeightsCard, save_weights

MODELS = gd.list_models()
# the smallest input of each model whose smallest is above 32 (else 32; LeNet: its one size)
SMALLEST = {
    "alexnet": 96,
    "caffenet": 96,
    "alexnet_torchvision": 64,
    "zfnet": 64,
    "nin_imagenet": 39,
}
SMALLEST |= {n: 75 for n in MODELS if n.startswith("inception_")}  # two 3x3/2 grid reductions
# fc6/fc7 of AlexNet and VGG narrowed from 4096 to 256: the same layers and graph, 10x fewer
# weights to initialise, copy and serialise (VGG's fc6 alone is 103 M at full width)
NARROW = {"AlexNet": {"fc_width": 256}, "ZFNet": {"fc_width": 256}, "VGG": {"fc_width": 256}}
# Inception-v4 and Inception-ResNet with one module of each kind in the A and B stages and two
# in C (the release's last one is linear): every kind of module and join, a third of the graph
NARROW["Inception-v4"] = {"repeats": (1, 1, 2)}


pytestmark = pytest.mark.usefixtures("one_thread")


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    card = gd.model_card(name)
    size = card.input_size if card.family == "LeNet" else SMALLEST.get(name, 32)
    return torch.randn(batch, card.preprocessing.channels, size, size)


def random_model(name: str, **kwargs) -> nn.Module:
    """A registered model with BatchNorm statistics and affine parameters away from their
    (identity) defaults, so that folding them is actually tested."""
    model = gd.create_model(name, **{**NARROW.get(gd.model_card(name).family, {}), **kwargs})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def assert_close_logits(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-4) -> None:
    # random BatchNorm statistics make logits of any scale: tolerance relative to it
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * max(scale, 1.0))


# --- fused inference form ---------------------------------------------------------------------


def test_bf16_inference_keeps_the_lrn_in_the_network_and_the_logits_close():
    """Our LRN runs in bf16 itself (its bracket in float32): no float32 detour around it, and
    the logits of a bf16 GoogLeNet stay close to float32's."""
    model = random_model("googlenet")
    x = small_input("googlenet")
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    lrns = [m for m in fast.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2 and all(type(m).__name__ == "LocalResponseNorm" for m in lrns)
    assert not any(type(m).__name__ == "Float32" for m in fast.modules())
    with torch.inference_mode():
        want, got = model(x), fast(x)
    assert got.dtype == torch.float32
    assert (got - want).abs().max() <= 0.05 * want.abs().max()


@pytest.mark.parametrize("name", MODELS)
def test_fused_equals_plain_for_every_model(name):
    model = random_model(name)
    x = small_input(name)
    fast = optimize_for_inference(model, x[:1])
    with torch.inference_mode():
        assert_close_logits(fast(x), model(x))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    left = [m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)]
    if name.startswith(("densenet",)):  # pre-activation: BN before the conv stays
        assert 0 < len(left) < len(bns)
    else:
        assert left == []
    if isinstance(getattr(model, "inception3a", None), Inception) and "naive" not in name:
        assert sum(isinstance(m, FusedInception) for m in fast.modules()) == 9
    assert all(getattr(fast.net, aux, None) is None for aux in ("aux1", "aux2"))
    assert model.training is False and not any(
        isinstance(m, FusedInception) for m in model.modules()
    )


def test_fold_bn_into_conv_matches_conv_then_bn():
    conv = nn.Conv2d(6, 8, 3, padding=1, groups=2, bias=True)
    bn = nn.BatchNorm2d(8, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(3, 6, 9, 9)
    torch.testing.assert_close(fold_bn_into_conv(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_folding_skips_a_batchnorm_whose_conv_output_is_read_elsewhere():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 1)
            self.bn2 = nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            z = self.conv2(self.relu(y))
            return self.bn(y) + y + self.bn2(z)  # conv's output read twice; conv2's once

    model = Branchy().eval()
    x = torch.randn(2, 3, 5, 5)
    assert conv_bn_pairs(model, x) == [("conv2", "bn2")]
    with torch.no_grad():
        want = model(x)
    fold_batchnorm(model, x)
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.bn2, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)


def test_fold_batchnorm_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(gd.create_model("resnet18"), torch.zeros(1, 3, 32, 32))


# --- the fused 1x1 convolutions in training -------------------------------------------------


def test_fused_1x1_training_gradients_equal_unfused():
    # In float64: in float32 the two agree to 1e-5 in the forward and above inception4e in the
    # backward, but rounding (6e-8) is amplified up to 5e5-fold on the way down through
    # BatchNorm over 4x6x6 values, so conv1's gradients differ by up to 3% of their largest
    # (whether they do depends on the CPU's kernels and the thread count). float64's rounding
    # (1e-16) amplified as much is 6e-11 (3e-14 measured), well inside 1e-8.
    plain = gd.create_model("googlenet_torchvision", input_size=96).train().double()
    fused = fuse_inception_1x1(copy.deepcopy(plain))
    assert sum(isinstance(m, FusedInception) for m in fused.modules()) == 9
    x, y = torch.randn(4, 3, 96, 96, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    losses = []
    for model in (plain, fused):
        torch.manual_seed(1)  # the same dropout masks
        loss = model.training_loss(model(x), y).total
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    # the fused model's gradients, written in the plain layout, are the plain model's
    grads = {}
    for name, module in fused.named_modules():
        if isinstance(module, FusedInception):
            for pname, p in module.reduce.named_parameters():
                parts = torch.split(p.grad, module.splits)
                prefixes = ("branch1x1", "branch3x3.reduce", "branch5x5.reduce")
                for prefix, g in zip(prefixes, parts, strict=True):
                    grads[f"{name}.{prefix}.{pname}"] = g
    for name, p in fused.named_parameters():
        if ".reduce." not in name:
            grads[name] = p.grad
    for name, p in plain.named_parameters():
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-8, atol=1e-8 * scale + 1e-15)
    # BatchNorm running statistics updated the same way
    plain_state, fused_state = plain.state_dict(), fused.state_dict()
    for key in plain_state:
        torch.testing.assert_close(fused_state[key], plain_state[key], rtol=1e-10, atol=1e-12)


def test_fused_state_dict_round_trip():
    plain = gd.create_model("googlenet_torchvision", aux_logits=False)
    fused = fuse_inception_1x1(copy.deepcopy(plain))
    state = fused.state_dict()
    assert list(sorted(state)) == list(sorted(plain.state_dict()))  # the plain layout
    other = gd.create_model("googlenet_torchvision", aux_logits=False)
    other.load_state_dict(state)  # a fused model's checkpoint loads into a plain one
    refused = fuse_inception_1x1(gd.create_model("googlenet_torchvision", aux_logits=False))
    refused.load_state_dict(plain.state_dict())  # and a plain checkpoint into a fused one
    back = unfuse_inception_1x1(copy.deepcopy(refused))
    assert not any(isinstance(m, FusedInception) for m in back.modules())
    for key, value in plain.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
        assert torch.equal(back.state_dict()[key], value)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(refused.eval()(x), plain.eval()(x), rtol=1e-5, atol=1e-5)


def test_se_googlenet_keeps_its_squeeze_excitation_when_fused():
    plain = random_model("se_googlenet")
    fused = fuse_inception_1x1(copy.deepcopy(plain))
    assert all(m.se is not None for m in fused.modules() if isinstance(m, FusedInception))
    unfused = unfuse_inception_1x1(copy.deepcopy(fused))
    assert type(unfused.inception4a) is type(plain.inception4a)


# --- ONNX export, checked by ONNX Runtime -----------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_of_every_model_matches_eager(name):
    import onnxruntime as ort

    model = random_model(name)
    x = small_input(name, batch=3)  # another batch than the export's example (2)
    program = onnx_program(model, x.shape[-1])
    graph = program.model_proto.graph
    assert [i.name for i in graph.input] == ["images"]
    assert len(graph.output) == 1  # no aux heads
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        assert_close_logits(got, model(x))


@pytest.mark.parametrize("name", ["googlenet", "googlenet_torchvision", "resnet18"])
def test_onnx_export_of_the_fused_graph_matches_eager(name):
    import onnxruntime as ort

    model = random_model(name)
    x = small_input(name, batch=3)
    fast = optimize_for_inference(model, x[:1], channels_last=False)
    program = onnx_program(fast.net, x.shape[-1])
    ops = {n.op_type for n in program.model_proto.graph.node}
    assert "BatchNormalization" not in ops
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        assert_close_logits(got, model(x))


def test_exported_graph_keeps_the_1x1s_apart_unless_asked(tmp_path):
    """ONNX Runtime's blocked layout has no Split: exports fold BatchNorm but keep the three
    1x1 convolutions separate by default; `fuse_1x1` fuses them (nine Splits), same outputs."""
    import onnx

    from goingdeeper.inference import OnnxRuntimeModel, write_onnx

    model = random_model("googlenet_torchvision", aux_logits=False)
    x = small_input("googlenet_torchvision", batch=2)
    with torch.no_grad():
        want = model.eval()(x)
    for fuse_1x1, splits, convs in ((False, 0, 57), (True, 9, 39)):
        path = write_onnx(model, tmp_path / f"g{fuse_1x1}.onnx", x.shape[-1], fuse_1x1=fuse_1x1)
        ops = [n.op_type for n in onnx.load(str(path)).graph.node]
        assert (ops.count("Split"), ops.count("Conv")) == (splits, convs)
        assert "BatchNormalization" not in ops
        assert_close_logits(OnnxRuntimeModel(path)(x), want)


# --- TorchScript ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_of_every_model_matches_eager(name, tmp_path):
    """Traced in eval mode at batch 1, saved and loaded back without goingdeeper's classes:
    the same logits as the eager model (1e-5) at another batch size, no aux heads."""
    model = random_model(name)
    x = small_input(name, batch=3)
    path = write_torchscript(model, tmp_path / f"{name}.pt", x.shape[-1])
    loaded = torch.jit.load(str(path))
    assert not any("aux" in n for n, _ in loaded.named_parameters())
    with torch.no_grad():
        assert_close_logits(loaded(x), model(x), rel=1e-5)


# --- the CLI --------------------------------------------------------------------------------


def _tiny_weights(tmp_path):
    """A googlenet_torchvision weights file with a card, written as `weights import` does."""
    model = random_model("googlenet_torchvision", aux_logits=False)
    card = WeightsCard(
        model="googlenet_torchvision",
        model_kwargs={"aux_logits": False},
        num_classes=1000,
        class_names=[f"class{i}" for i in range(1000)],
        preprocessing=gd.model_card("googlenet_torchvision").preprocessing.scaled(64),
    )
    return save_weights(model, card, tmp_path / "tiny.safetensors")


def _photo(path):
    from PIL import Image

    pixels = (np.arange(80 * 70 * 3) % 251).astype(np.uint8).reshape(70, 80, 3)
    Image.fromarray(pixels).save(path)
    return path


def test_cli_export_onnx_and_program(tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "g.onnx"
    args = ["export", "onnx", "--model", "googlenet", "--out", str(out), "--input-size", "64"]
    assert main([*args, "--fuse-1x1"]) == 2  # without --fused: one line, nothing written
    assert "--fuse-1x1 goes with --fused" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--fused"]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((1, 3, 64, 64), np.float32)})[0].shape == (1, 1000)
    pt2 = tmp_path / "g.pt2"
    argv = ["export", "program", "--model", "lenet5", "--out", str(pt2)]
    assert main(argv) == 0
    program = torch.export.load(str(pt2))
    assert program.module()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_cli_export_torchscript_from_weights_matches_eager(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=5).eval()
    card = WeightsCard(
        model="resnet18",
        model_kwargs={"num_classes": 5},
        num_classes=5,
        class_names=[f"class {i}" for i in range(5)],
        preprocessing=Preprocessing(resize=73, crop=64),
    )
    weights = save_weights(model, card, tmp_path / "r18")
    out = tmp_path / "r18.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "torchscript", "--weights", str(weights), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "traced at 64x64" in printed and "PyTorch deprecates TorchScript" in printed
    assert not [w for w in caught if "torch.jit" in str(w.message)]  # said in our one line
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), atol=1e-5, rtol=1e-5)


def test_cli_export_int8_from_weights(tmp_path):
    weights = _tiny_weights(tmp_path)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(3):
        _photo(calibration / f"{i}.png")
    out = tmp_path / "g8.onnx"
    argv = ["export", "onnx", "--weights", str(weights), "--out", str(out), "--fused", "--int8"]
    assert main([*argv, "--calibration", str(calibration)]) == 0
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "googlenett", "--out", "x.onnx"], "unknown model"),
        (["--weights", "missing.safetensors", "--out", "x.onnx"], "no such weights file"),
        (["--model", "googlenet", "--out", "x.onnx", "--int8"], "--calibration"),
        (["--model", "googlenet", "--out", "x.onnx", "--int8", "--calibration", "nope"], "nope"),
    ],
)
def test_cli_export_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "onnx", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_predict_with_onnxruntime_matches_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GOINGDEEPER_CACHE", str(tmp_path / "cache"))
    weights = _tiny_weights(tmp_path)
    photo = _photo(tmp_path / "photo.png")
    outputs = {}
    for runtime in ("torch", "onnxruntime"):
        assert main(["predict", str(photo), "--weights", str(weights), "--runtime", runtime]) == 0
        outputs[runtime] = capsys.readouterr().out.splitlines()
    assert outputs["torch"][0] == outputs["onnxruntime"][0] == str(photo)
    assert len(outputs["onnxruntime"]) == 6  # the path, then the top 5
    # same classes in the same order (probabilities agree to the printed 0.01%)
    assert outputs["torch"] == outputs["onnxruntime"]
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 1  # exported once, cached


def test_exported_graph_cache_follows_the_weights_contents(tmp_path, monkeypatch):
    """The cache is named by a hash of the weights themselves: the same weights reuse the
    graph wherever they were loaded from; other weights (a file replaced in place, its time set
    back, once served the old graph) export again."""
    import torch

    from goingdeeper.inference import onnxruntime_model

    monkeypatch.setenv("GOINGDEEPER_CACHE", str(tmp_path / "cache"))
    model = random_model("lenet5")
    onnxruntime_model(model, 32)
    onnxruntime_model(model.eval(), 32)
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 1  # the same weights: cached
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    onnxruntime_model(model, 32, threads=1)
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 2


def test_cli_predict_views_average_the_softmax_over_the_paper_views(tmp_path, capsys):
    import torch

    from goingdeeper.evaluate.views import VIEW_FUNCTIONS
    from goingdeeper.images import load_image
    from goingdeeper.weights import load_weights

    weights = _tiny_weights(tmp_path)
    photo = _photo(tmp_path / "photo.png")
    model, card = load_weights(weights)
    for views in ("1", "10", "144"):
        assert main(["predict", str(photo), "--weights", str(weights), "--views", views]) == 0
        lines = capsys.readouterr().out.splitlines()
        x = VIEW_FUNCTIONS[views](load_image(photo), card.preprocessing)
        assert x.shape[0] == int(views)
        with torch.inference_mode():
            # the same batches of 48 views as the CLI, so near-ties break the same way
            probs = torch.cat([torch.softmax(model(v), dim=1) for v in x.split(48)]).mean(0)
        top = probs.topk(5)
        printed = [(float(line.split()[0].rstrip("%")), int(line.split()[1])) for line in lines[1:]]
        assert [i for _, i in printed] == top.indices.tolist()
        assert [p for p, _ in printed] == pytest.approx(
            [100 * v for v in top.values.tolist()], abs=0.006
        )


# --- real photos: BVLC GoogLeNet ------------------------------------------------------------


@pytest.fixture(scope="module")
def bvlc(shared_data):
    from goingdeeper.data import discover
    from goingdeeper.data.imagenet import imagenet_classes
    from goingdeeper.weights import import_bvlc

    model, card = import_bvlc(shared_data / "bvlc-googlenet")
    photos = discover(shared_data / "imagenet-sample", known=imagenet_classes())
    samples = photos.split("all").samples
    return model.eval(), card, samples


def _crops(samples, card) -> tuple[torch.Tensor, torch.Tensor]:
    from goingdeeper.evaluate.views import one_crop
    from goingdeeper.images import load_image

    images = torch.cat([one_crop(load_image(p), card.preprocessing) for p, _ in samples])
    return images, torch.tensor([label for _, label in samples])


@pytest.mark.slow
@pytest.mark.data
def test_bvlc_fused_equals_plain_on_real_photos(bvlc):
    model, card, samples = bvlc
    x, _ = _crops(samples[::125], card)  # 8 photos across the classes
    fast = optimize_for_inference(model)
    with torch.inference_mode():
        want, got = model(x), fast(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), want.argmax(1))


@pytest.mark.slow
@pytest.mark.data
def test_bvlc_int8_accuracy_on_held_out_photos(bvlc, tmp_path):
    """Calibrate on 100 photos, measure top-1 on 200 others: int8 within 1.5 points of fp32.
    (The benchmark measures all 1000: benchmarks/results/inference.md.)"""
    from goingdeeper.inference import OnnxRuntimeModel, export_onnx, quantize_onnx

    model, card, samples = bvlc
    calibration, _ = _crops(samples[0::10], card)  # 100 photos
    held_out, labels = _crops([s for i, s in enumerate(samples) if i % 5 == 2][:200], card)
    fp32 = export_onnx(optimize_for_inference(model, channels_last=False).net, tmp_path / "f.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "q.onnx", calibration.split(25))
    top1 = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        run = OnnxRuntimeModel(path, threads=1)
        pred = torch.cat([run(b).argmax(1) for b in held_out.split(50)])
        top1[name] = (pred == labels).float().mean().item()
    assert top1["fp32"] > 0.6  # the real network, not noise
    assert top1["int8"] >= top1["fp32"] - 0.015, top1
