"""GoogLeNet against the paper: Table 1's output channels and sizes, the layout details of
section 5 (and torchvision's departures from them), the BatchNorm and naive variants,
the smallest inputs, the aux heads' inputs and their 0.3-weighted loss, and export graphs
without the aux heads (the ONNX one checked by ONNX Runtime). The checks every model shares,
counts and the training record included, are in test_models.py."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import InputError, ModelArgumentError
from goingdeeper.inference import export_onnx, export_program
from goingdeeper.models.base import unfused
from goingdeeper.models.googlenet import (
    INCEPTION_TABLE,
    FeatureTaps,
    GoogLeNetOutputs,
    feature_sizes,
)
from goingdeeper.models.inception import ConvReLU, Inception
from goingdeeper.registry import build_model, build_shell

GOOGLENETS = ["googlenet", "googlenet_bn", "googlenet_torchvision", "googlenet_naive"]
SIZE = 96  # small enough to be quick, large enough for the aux heads (smallest: 79)


def test_registry_lists_and_creates():
    assert set(GOOGLENETS) <= set(gd.list_models())
    assert gd.list_models("googlenet_t*") == ["googlenet_torchvision"]
    assert isinstance(gd.create_model("googlenet"), gd.GoogLeNet)


def test_model_card():
    card = gd.model_card("googlenet")
    assert (card.arxiv, card.year, card.input_size) == ("1409.4842", 2014, 224)
    costs = gd.model_costs("googlenet")
    assert (costs.params, costs.macs) == (6_998_552, 1_582_671_872)
    assert costs.depth == 22  # "22 layers deep when counting only layers with parameters"
    assert card.preprocessing.channel_order == "BGR"
    assert card.preprocessing.mean == (104.0, 117.0, 123.0)


def test_table1_output_channels_of_every_row():
    model = gd.create_model("googlenet", aux_logits=False)
    expected = {
        "inception3a": 256,
        "inception3b": 480,
        "inception4a": 512,
        "inception4b": 512,
        "inception4c": 512,
        "inception4d": 528,
        "inception4e": 832,
        "inception5a": 832,
        "inception5b": 1024,
    }
    seen = {}
    hooks = [
        getattr(model, n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape[1:]))
        )
        for n in expected
    ]
    model.eval()(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    spatial = {"3": 28, "4": 14, "5": 7}
    for name, channels in expected.items():
        assert seen[name] == (channels, spatial[name[9]], spatial[name[9]]), name
    assert [n for n, *_ in INCEPTION_TABLE] == list(expected)
    assert feature_sizes(224) == {
        "input": 224,
        "conv1": 112,
        "pool1": 56,
        "pool2": 28,
        "pool3": 14,
        "pool4": 7,
        "aux": 4,
    }


def test_forward_features_is_a_tensor_and_forward_taps_the_aux_inputs():
    with torch.device("meta"):  # shapes at 224, without the arithmetic
        model = gd.create_model("googlenet").eval()
        x = torch.zeros(2, 3, 224, 224)
        features = model.forward_features(x)
        taps = model.forward_taps(x)
    assert isinstance(features, torch.Tensor) and features.shape == (2, 1024, 7, 7)
    assert isinstance(taps, FeatureTaps) and taps.features.shape == (2, 1024, 7, 7)
    assert taps.inception4a.shape == (2, 512, 14, 14)  # Table 1: 4a and 4d at 14x14
    assert taps.inception4d.shape == (2, 528, 14, 14)
    # values: the taps are the outputs of inception 4a and 4d, and the aux heads' inputs
    model = gd.create_model("googlenet", input_size=SIZE, dropout=0.0, aux_dropout=0.0).eval()
    seen = {}
    for name in ("inception4a", "inception4d"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o)
        )
    x = torch.randn(2, 3, SIZE, SIZE)
    # training as evaluation runs it, convolution by convolution (the fused 1x1s round
    # differently: tested elsewhere)
    with torch.no_grad(), unfused(model):
        taps = model.forward_taps(x)
        assert torch.equal(taps.inception4a, seen["inception4a"])
        assert torch.equal(taps.inception4d, seen["inception4d"])
        assert torch.equal(taps.features, model.forward_features(x))
        record = model.train()(x)  # no dropout, no BatchNorm: the same arithmetic
    assert torch.equal(record.aux1, model.aux1(taps.inception4a))
    assert torch.equal(record.aux2, model.aux2(taps.inception4d))
    assert torch.equal(record.logits, model.forward_head(taps.features))


def test_paper_layout_details():
    m = gd.create_model("googlenet")
    assert m.conv1.conv.kernel_size == (7, 7) and m.conv1.conv.bias is not None
    assert m.pool1.ceil_mode and m.pool4.kernel_size == 3
    assert (m.lrn1.size, m.lrn1.alpha, m.lrn1.beta, m.lrn1.k) == (5, 1e-4, 0.75, 1.0)
    assert m.conv2_reduce.conv.out_channels == 64 and m.conv2.conv.kernel_size == (3, 3)
    assert m.inception3a.branch5x5.conv.conv.kernel_size == (5, 5)
    assert isinstance(m.aux1.pool, nn.AvgPool2d) and m.aux1.pool.kernel_size == 5
    assert m.aux1.pool.stride == 3 and m.aux1.fc1.in_features == 2048
    assert m.aux1.dropout.p == 0.7 and m.dropout.p == 0.4
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())


def test_torchvision_layout_details():
    m = gd.create_model("googlenet_torchvision")
    assert m.lrn1 is None and m.conv1.conv.bias is None and m.conv1.bn.eps == 1e-3
    assert m.inception3a.branch5x5.conv.conv.kernel_size == (3, 3)
    assert m.pool4.kernel_size == 2 and m.dropout.p == 0.2
    assert isinstance(m.aux1.pool, nn.AdaptiveAvgPool2d)


def test_bn_variant_has_batchnorm_and_no_lrn():
    m = gd.create_model("googlenet_bn")
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert len(convs) == len(bns) and m.lrn1 is None and m.lrn2 is None


def test_naive_module_blows_up_without_pool_projection():
    strict = Inception(192, 64, 96, 128, 16, 32, 32, naive=True, pool_passthrough=True)
    assert strict.out_channels == 64 + 128 + 32 + 192
    assert not hasattr(strict.branch3x3, "reduce")
    out = strict(torch.zeros(1, 192, 28, 28))
    assert out.shape == (1, 416, 28, 28)
    full = gd.create_model("googlenet_naive", pool_passthrough=True, aux_logits=False)
    assert full.num_features > 1024  # the widths grow from stage to stage (section 4)


def test_separable_conv1_is_what_table1_counts():
    m = gd.create_model("googlenet", conv1="separable", aux_logits=False)
    weights = sum(x.weight.numel() for x in m.conv1.modules() if isinstance(x, nn.Conv2d))
    assert weights == 3 * 8 * 49 + 24 * 64 == 2712  # 2.65K: Table 1's "2.7K"
    assert m.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_torchvision"])
def test_too_small_inputs_name_the_smallest_size(name):
    model = gd.create_model(name, aux_logits=False).eval()
    smallest = model.min_size
    with torch.no_grad():
        assert model(torch.zeros(1, 3, smallest, smallest)).shape == (1, 1000)
        with pytest.raises(ValueError, match=f"smallest that works is {smallest}x{smallest}"):
            model(torch.zeros(1, 3, smallest - 1, smallest - 1))


def test_aux_heads_need_their_5x5_pool():
    with pytest.raises(ValueError, match="smallest that works is 79"):
        gd.create_model("googlenet", input_size=78)
    model = gd.create_model("googlenet", input_size=79).train()
    assert isinstance(model(torch.zeros(2, 3, 79, 79)), GoogLeNetOutputs)
    with pytest.raises(ValueError, match="smallest that works is 79"):
        model(torch.zeros(2, 3, 70, 70))
    with pytest.raises(ValueError, match="input_size"):  # aux FC built for another size
        gd.create_model("googlenet", input_size=224).train()(torch.zeros(2, 3, 160, 160))
    # feature maps never reach the aux heads: a training-mode extractor takes small inputs
    extractor = gd.create_model("googlenet", input_size=79, features_only=True).train()
    x = torch.zeros(2, 3, 40, 40)
    shapes = [m.shape for m in extractor(x)]
    assert len(shapes) == 5 and shapes == [m.shape for m in extractor.eval()(x)]


def test_free_input_size_and_classes():
    model = gd.create_model("googlenet", num_classes=10, input_size=256).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 320, 300)).shape == (1, 10)
    model.train()
    assert model(torch.zeros(2, 3, 256, 256)).aux1.shape == (2, 10)


def test_loss_helper_weights_aux_by_03():
    logits, a1, a2 = torch.randn(3, 4, 5).unbind(0)
    target = torch.tensor([0, 1, 2, 3])
    ce = nn.functional.cross_entropy
    expected = ce(logits, target) + 0.3 * (ce(a1, target) + ce(a2, target))
    loss = build_shell("googlenet").training_loss  # the model declares its loss and weight
    record = loss(GoogLeNetOutputs(logits, a1, a2), target)
    torch.testing.assert_close(record.total, expected)
    torch.testing.assert_close(record.main, ce(logits, target))
    torch.testing.assert_close(loss(logits, target).total, ce(logits, target))


def test_reset_classifier():
    model = gd.create_model("googlenet", input_size=SIZE)
    model.reset_classifier(3)
    out = model.train()(torch.zeros(2, 3, SIZE, SIZE))
    assert [t.shape[1] for t in out] == [3, 3, 3]


def test_torch_export_has_no_aux_heads():
    model = gd.create_model("googlenet").eval()
    x = torch.randn(1, 3, 224, 224)
    exported = export_program(model)
    names = [n.name for n in exported.graph.nodes] + list(exported.state_dict)
    assert names and not any("aux" in n for n in names)
    assert any("inception5b" in n for n in names)
    assert model.aux1 is not None  # the original keeps its heads
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_onnx_export_runs_in_onnxruntime_without_aux(tmp_path):
    import onnx
    import onnxruntime as ort

    model = gd.create_model("googlenet").eval()
    path = export_onnx(model, tmp_path / "googlenet.onnx")
    graph = onnx.load(str(path)).graph
    names = [i.name for i in graph.initializer] + [n.name for n in graph.node]
    assert names and not any("aux" in n for n in names)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 224, 224)  # another batch size than the export's example
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), atol=1e-4, rtol=1e-4)


def test_a_fully_connected_head_reads_the_whole_map_and_generalises_the_average(one_thread):
    """Section 5's alternative to global average pooling: a linear layer on the 7 x 7 x 1024
    map. With each of its 49 positions given the average head's weights / 49 it computes
    exactly what the average head computes; it fixes the input to its size."""
    avg = build_model("googlenet", aux_logits=False).eval()
    fc = build_model("googlenet", aux_logits=False, head="fc").eval()
    fc.load_state_dict(
        {k: v for k, v in avg.state_dict().items() if not k.startswith("fc.")}, strict=False
    )
    assert fc.fc.in_features == 1024 * 7 * 7 and fc.avgpool is None
    with torch.no_grad():
        fc.fc.weight.copy_(avg.fc.weight.repeat_interleave(49, dim=1) / 49)
        fc.fc.bias.copy_(avg.fc.bias)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(fc(x), avg(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="224 x 224"):
        fc(torch.randn(1, 3, 256, 256))
    fc.reset_classifier(10)
    assert fc.fc.in_features == 1024 * 49 and fc.fc.out_features == 10
    with pytest.raises(ModelArgumentError, match="head must be 'avg' \\(paper\\) or 'fc'"):
        build_model("googlenet", head="max")


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference as a share of the largest value (float rounding: ~1e-7)."""
    return ((a - b).abs().max() / b.abs().max()).item()


def _inception_pair(batch_norm: bool) -> tuple[Inception, Inception]:
    conv = partial(ConvReLU, batch_norm=batch_norm, bn_eps=1e-3, bias=not batch_norm)
    fused = Inception(192, 64, 96, 128, 16, 32, 32, conv=conv).train()
    plain = copy.deepcopy(fused)
    plain.fused = False
    return fused, plain


@pytest.mark.parametrize("batch_norm", [False, True])
def test_training_runs_the_three_1x1s_as_one_convolution_with_the_same_result(batch_norm):
    """In training, an Inception module's 1x1 branch and its two reductions read the input in
    one convolution of their stacked filters; outputs and every gradient (input, weights,
    BatchNorm) equal the three separate convolutions' to float rounding, and the parameters
    stay the three modules' own."""
    fused, plain = _inception_pair(batch_norm)
    assert fused._fusable()
    x0, g = torch.randn(4, 192, 14, 14).relu(), torch.randn(4, 256, 14, 14)
    for module in (fused, plain):
        x = x0.clone().requires_grad_(True)
        (module(x) * g).sum().backward()
        module.input_grad = x.grad
    assert _relative_error(fused.input_grad, plain.input_grad) < 1e-5
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in plain.named_parameters()]
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert _relative_error(a.grad, b.grad) < 1e-5, name
    with torch.no_grad():
        torch.testing.assert_close(fused(x0), plain(x0), rtol=1e-5, atol=1e-6)


def test_the_1x1s_run_one_by_one_in_evaluation_and_when_unfused():
    """Hooks see each 1x1 run: in evaluation always, in training within `unfused`, which
    restores the fused mode after; a hook alone does not change the mode."""
    fused, _ = _inception_pair(batch_norm=True)
    seen = []
    fused.branch3x3.reduce.register_forward_hook(lambda *_: seen.append(1))
    x = torch.randn(2, 192, 8, 8)
    assert fused._fusable() and fused.fused
    with unfused(fused):
        assert not fused.fused
        fused(x)
    assert seen == [1]
    assert fused.fused
    fused(x)
    assert seen == [1]  # fused: the module itself did not run
    calls = []
    fused.branch1x1.register_forward_pre_hook(lambda *_: calls.append(1))
    fused.eval()(x)
    assert calls == [1]
    naive = Inception(16, 8, 4, 8, 4, 8, 8, naive=True)
    assert not naive._fusable()


def test_googlenet_trains_fused_by_default_to_the_same_losses():
    """A whole GoogLeNet (BVLC layout: biases, no BatchNorm) in training: the same outputs
    and weight gradients with the fusion on and off (no max-pool tie is near enough to flip)."""
    torch.manual_seed(0)
    model = gd.create_model("googlenet", num_classes=10, dropout=0.0, aux_dropout=0.0).train()
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, Inception):
            m.fused = False
    assert all(m.fused for m in model.modules() if isinstance(m, Inception))
    x, w = torch.randn(2, 3, 224, 224), torch.randn(2, 10)
    outs = []
    for m in (model, plain):
        out = m(x)
        (out[0] * w).sum().backward()
        outs.append(out)
    for a, b in zip(outs[0], outs[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(model.named_parameters(), plain.parameters(), strict=True):
        if b.grad is not None:
            assert _relative_error(a.grad, b.grad) < 1e-4, name
