"""AlexNet (2012) and ZFNet (2013) against their papers: the feature-map sizes of their
figures, the two towers as grouped convolutions, the LRN formula written out by hand (and our
fast LRN against PyTorch's, values and gradients), ZFNet's pooling switches against max
unpooling, and filter renormalisation. The checks every model shares are in test_models.py."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.models.base import renormalize_filters
from goingdeeper.models.lrn import LocalResponseNorm, local_response_norm
from helpers import on_meta

pytestmark = pytest.mark.usefixtures("one_thread")


def test_alexnet_and_zfnet_sizes_follow_the_papers():
    rows = {r.name: r.output for r in summarize(on_meta("alexnet"), 227).rows}
    assert rows["conv1"] == (96, 55, 55) and rows["pool1"] == (96, 27, 27)
    assert rows["conv2"] == (256, 27, 27) and rows["pool2"] == (256, 13, 13)
    assert rows["conv5"] == (256, 13, 13) and rows["pool5"] == (256, 6, 6)
    names = [r.name for r in summarize(on_meta("alexnet"), 227).rows]
    assert names[:7] == ["conv1", "lrn1", "pool1", "conv2", "lrn2", "pool2", "conv3"]
    zf = summarize(on_meta("zfnet"), 224).rows  # Fig. 3: 110, 55, 26, 13, 13, 13, 6
    rows = {r.name: r.output for r in zf}
    assert rows["conv1"] == (96, 110, 110) and rows["pool1"] == (96, 55, 55)
    assert rows["conv2"] == (256, 26, 26) and rows["pool2"] == (256, 13, 13)
    assert rows["conv3"] == (384, 13, 13) and rows["pool5"] == (256, 6, 6)
    assert [r.name for r in zf][:6] == ["conv1", "pool1", "lrn1", "conv2", "pool2", "lrn2"]


def test_alexnet_towers_are_groups():
    model = on_meta("alexnet")
    groups = {n: model.get_submodule(f"{n}.conv").groups for n in ("conv1", "conv2", "conv3")}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1}
    assert model.conv4.conv.groups == model.conv5.conv.groups == 2


def test_alexnet_lrn_is_the_papers_formula():
    lrn = gd.create_model("alexnet", fc_width=8).lrn1
    a = torch.randn(2, 12, 5, 5) * 10
    sq = F.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # channels i-2 .. i+2, clipped at the ends
    window = sum(sq[:, i : i + 12] for i in range(5))
    expected = a / (2.0 + 1e-4 * window).pow(0.75)  # k 2, alpha 1e-4 on the plain sum
    torch.testing.assert_close(lrn(a), expected)


@pytest.mark.parametrize("size", [5, 4, 3])
@pytest.mark.parametrize("beta", [0.75, 0.6])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_lrn_equals_pytorchs_in_value_and_gradient(size, beta, channels_last):
    """The shifted-sum LRN against F.local_response_norm: outputs and input gradients, in
    both memory layouts, even and odd windows, the 0.75 shortcut and a general beta."""
    torch.manual_seed(size)
    x = torch.relu(torch.randn(3, 11, 6, 5) * 30)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fast = LocalResponseNorm(size, 1e-3, beta, 2.0)
    assert isinstance(fast, nn.LocalResponseNorm)
    grad = torch.randn(3, 11, 6, 5)
    results = []
    for fn in (fast, lambda t: F.local_response_norm(t, size, 1e-3, beta, 2.0)):
        leaf = x.clone().requires_grad_(True)
        out = fn(leaf)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    (out, g), (ref_out, ref_g) = results
    assert out.abs().max() > 1  # the normalisation is not trivially the identity
    assert (out - x).abs().max() > 1e-2 * x.abs().max()
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():  # the inference branch
        torch.testing.assert_close(fast(x), ref_out, rtol=1e-5, atol=1e-5)


def test_fast_lrn_gradcheck():
    x = (torch.randn(2, 7, 3, 4, dtype=torch.double) * 10).requires_grad_(True)
    for size, beta in [(5, 0.75), (4, 0.6)]:
        lrn = partial(local_response_norm, size=size, alpha=1e-2, beta=beta, k=2.0)
        assert torch.autograd.gradcheck(lrn, x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fast_lrn_in_half_precision_stays_finite_and_within_its_rounding(dtype):
    """Activations of BVLC's 0..255 inputs reach the hundreds: squared, they overflow fp16
    (max 65504), and summed in bf16 they lose percents. The bracket is computed in float32,
    so values and gradients (with a loss scale of 1024) stay within the type's own rounding
    of float32's."""
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 9, 9) * 400).relu()
    eps = torch.finfo(dtype).eps
    reference = x.clone().requires_grad_(True)
    (local_response_norm(reference, 5) * 1024).sum().backward()
    low = x.to(dtype).requires_grad_(True)
    out = local_response_norm(low, 5)
    (out.float() * 1024).sum().backward()
    with torch.no_grad():
        plain = local_response_norm(x.to(dtype), 5)
    for got in (out, plain):
        assert got.dtype == dtype and torch.isfinite(got).all()
        want = local_response_norm(x, 5)
        assert ((got.float() - want).abs() <= 4 * eps * want.abs() + 1e-3).all()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad).all()
    scale = reference.grad.abs().max()
    assert (low.grad.float() - reference.grad).abs().max() <= 4 * eps * scale


def test_zfnet_switches():
    model = gd.create_model("zfnet", num_classes=5, fc_width=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_with_switches(x)
        assert torch.equal(out.logits, model(x))
    assert list(out.switches) == ["pool1", "pool2", "pool5"]
    for name, (indices, size) in out.switches.items():
        pool = getattr(model, name)
        pooled = out.activations[name]
        assert pool.ceil_mode and indices.shape == pooled.shape
        # unpooling with the switches puts each max back where it came from
        unpooled = F.max_unpool2d(pooled, indices, pool.kernel_size, pool.stride, output_size=size)
        again = F.max_pool2d(unpooled, pool.kernel_size, pool.stride, ceil_mode=True)
        assert torch.equal(again, pooled)


def test_renormalize_filters():
    model = gd.create_model("zfnet", num_classes=5, fc_width=16)
    w = model.conv1.conv.weight
    with torch.no_grad():
        w.normal_(0.0, 0.01)
        w[:3] *= 50  # RMS ~0.5
    before = w.detach().clone()
    rescaled = renormalize_filters(model)
    rms = w.detach().pow(2).mean((1, 2, 3)).sqrt()
    assert rescaled >= 3
    torch.testing.assert_close(rms[:3], torch.full((3,), 0.1))
    assert torch.equal(w[3:].detach(), before[3:])
    assert (rms <= 0.1 + 1e-6).all()
