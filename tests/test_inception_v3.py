"""Inception v3 against the paper and torchvision: Table 1's output shapes row by row, the
modules of Figs. 5-7 and 10 and torchvision's departures from them, the aux head and its
training record, and torchvision's and timm's random weights imported with their outputs
(torchvision's hidden input transform stated as the card's preprocessing). The checks every
model shares (counts, forward, backward, features, export) are in test_models.py and
test_inference.py."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.analysis.paper import inception_v3_table1
from goingdeeper.analysis.summary import counting_model
from goingdeeper.cli import main
from goingdeeper.errors import InputError, ModelArgumentError
from goingdeeper.models.inception_v3 import (
    INCEPTION_V3_TABLE,
    TORCHVISION_INCEPTION_V3,
    InceptionV3Outputs,
)
from goingdeeper.preprocess import Preprocessing
from goingdeeper.train import config as cfg
from goingdeeper.train.build import build_optimizer, build_scheduler
from goingdeeper.train.engine import TrainStep, _update
from goingdeeper.weights import import_torchvision, load_weights
from goingdeeper.weights.timm import import_timm
from helpers import on_meta, randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = 107  # above the smallest input (75): 8x8 maps of 2 x 2 at the end


def _shapes(model: nn.Module, size: int = 299) -> dict[str, tuple[int, ...]]:
    """Each stem layer's and module's output (C, H, W) at `size`, on the meta device."""
    seen = {}
    for name in model.feature_chain():
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, o.shape[1:]))
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device="meta"))
    return {k: tuple(v) for k, v in seen.items()}


def test_table1_rows_at_299():
    """Table 1's input sizes: 299x299x3 -> 149x149x32 -> 147x147x32 -> 147x147x64 -> 73x73x64
    -> 71x71x80 -> 35x35x192 -> 35x35x288 (3 x Fig. 5) -> 17x17x768 (Fig. 6) -> 8x8x1280
    (Fig. 7) -> 8x8x2048."""
    shapes = _shapes(on_meta("inception_v3", aux_logits=False))
    assert [shapes[n] for n in ("conv1", "conv2", "conv3", "pool1", "conv4", "conv5")] == [
        (32, 149, 149),
        (32, 147, 147),
        (64, 147, 147),
        (64, 73, 73),
        (80, 71, 71),
        (192, 35, 35),
    ]
    assert shapes["conv6"] == (288, 35, 35)  # the input of the first Fig. 5 module
    modules = [name for name, *_ in INCEPTION_V3_TABLE]
    expected = {"inception_a": (288, 35), "reduction_a": (768, 17), "inception_b": (768, 17)}
    expected |= {"reduction_b": (1280, 8), "inception_c": (2048, 8)}
    for name in modules:
        channels, side = expected[name.rstrip("1234")]
        assert shapes[name] == (channels, side, side), name
    assert len([m for m in modules if m.startswith("inception_b")]) == 4  # Table 1 says 5


def test_torchvision_layout_shapes_and_counts():
    shapes = _shapes(on_meta("inception_v3_torchvision", aux_logits=False))
    assert shapes["conv4"] == (80, 73, 73) and shapes["conv5"] == (192, 71, 71)
    assert shapes["pool2"] == (192, 35, 35)  # Mixed_5b reads 192 channels
    assert [shapes[f"inception_a{i}"][0] for i in (1, 2, 3)] == [256, 288, 288]
    with torch.device("meta"):
        tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        tv_no_aux = torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=False
        )
    ours = on_meta("inception_v3_torchvision")
    assert sum(p.numel() for p in ours.parameters()) == 27_161_264
    assert sum(p.numel() for p in tv.parameters()) == 27_161_264
    assert sum(p.numel() for p in tv_no_aux.parameters()) == 23_834_568
    assert gd.model_costs("inception_v3_torchvision").params == 23_834_568
    # the paper: "less than 25 million parameters", about 5 G multiply-adds at 299
    paper = gd.model_costs("inception_v3")
    assert paper.params < 25_000_000 and 5e9 < paper.macs < 6e9


def test_paper_modules_and_the_releases_departures():
    paper, tv = on_meta("inception_v3"), on_meta("inception_v3_torchvision")
    # Fig. 5: 1x1 -> 3x3 where the release has 1x1 -> 5x5
    assert paper.inception_a1.branch1[1].conv.kernel_size == (3, 3)
    assert tv.inception_a1.branch1[1].conv.kernel_size == (5, 5)
    # Fig. 6: the doubled branch begins 1x7 (torchvision: 7x1); the single one 1x7 in both
    kernels = [m.conv.kernel_size for m in paper.inception_b1.branch2[1:]]
    assert kernels == [(1, 7), (7, 1), (1, 7), (7, 1)]
    assert [m.conv.kernel_size for m in tv.inception_b1.branch2[1:]][0] == (7, 1)
    # Fig. 7: the expanded filter bank, 1x3 beside 3x1 on one input
    split = paper.inception_c1.branch1[1]
    assert (split.a.conv.kernel_size, split.b.conv.kernel_size) == ((1, 3), (3, 1))
    # Fig. 10: each grid reduction a strided convolution beside a strided max pool
    for reduction in (paper.reduction_a, paper.reduction_b):
        assert isinstance(reduction.branch2[0], nn.MaxPool2d)
        assert reduction.branch0[-1].conv.stride == (2, 2)
    assert not paper.inception_a1.branch3[0].count_include_pad
    assert tv.inception_a1.branch3[0].count_include_pad
    assert (paper.dropout.p, tv.dropout.p) == (0.2, 0.5)
    # BN-auxiliary: the aux head's convolutions (its "fully connected" 5x5 included) have BN
    assert isinstance(paper.aux.conv1.bn, nn.BatchNorm2d)
    assert paper.aux.conv1.conv.kernel_size == (5, 5)
    bns = [m for m in paper.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in paper.modules() if isinstance(m, nn.Conv2d)]
    assert len(bns) == len(convs) and all(m.bias is None for m in convs)


def test_aux_record_and_its_loss_and_the_input_it_needs():
    model = gd.create_model("inception_v3", num_classes=5, dropout=0.0).train()
    x = torch.randn(2, 3, 299, 299)
    record = model(x)
    assert isinstance(record, InceptionV3Outputs) and record.aux.shape == (2, 5)
    y = torch.tensor([1, 4])
    want = F.cross_entropy(record.logits, y) + 0.4 * F.cross_entropy(record.aux, y)
    assert model.aux_weight == 0.4  # TF-slim's train script; the paper states none
    torch.testing.assert_close(model.training_loss(record, y).total, want)
    with pytest.raises(InputError, match="smallest that works is 299x299"):
        model(torch.zeros(2, 3, 298, 298))
    model.eval()
    with torch.no_grad():  # inference never needs the aux head: the smallest input is 75
        assert model(torch.zeros(1, 3, 75, 75)).shape == (1, 5)
    with pytest.raises(ModelArgumentError, match="branch_a_kernel must be 3"):
        gd.create_model("inception_v3", branch_a_kernel=7)
    with pytest.raises(ModelArgumentError, match="stem must be one of"):
        gd.create_model("inception_v3", stem="fig3")


# --- torchvision's and timm's weights ----------------------------------------------------------


def _torchvision_v3(transform_input: bool = False) -> nn.Module:
    torch.manual_seed(3)
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=True, transform_input=transform_input
    )
    return randomise_batchnorm(model)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    # random BatchNorm statistics make logits of any scale: 1e-5 relative to it
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_torchvision_weights_same_outputs_in_eval_and_aux_in_training():
    theirs = _torchvision_v3()
    ours, card = import_torchvision(theirs)
    assert card.model == "inception_v3_torchvision" and ours.aux is not None
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.no_grad():
        _close(ours(x), theirs(x))
    for model in (theirs, ours):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    _close(b.logits, a.logits)
    _close(b.aux, a.aux_logits)


def test_torchvision_input_transform_is_the_cards_preprocessing():
    """torchvision's published weights normalise for ImageNet and undo it inside the model
    (transform_input=True); the card states the (x - 0.5) / 0.5 the network sees."""
    theirs = _torchvision_v3(transform_input=True)
    ours, card = import_torchvision(theirs, tag="IMAGENET1K_V1")
    assert card.preprocessing == TORCHVISION_INCEPTION_V3
    assert (card.preprocessing.resize, card.preprocessing.crop) == (342, 299)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (320, 360, 3), dtype=np.uint8))
    imagenet = Preprocessing(resize=342, crop=299)  # what transform_input expects to be fed
    with torch.no_grad():
        want = theirs(imagenet(img).unsqueeze(0))
        got = ours(card.preprocessing(img).unsqueeze(0))
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_cli_import_of_torchvision_v3_and_the_aux_head_dropped_on_request(tmp_path, capsys):
    theirs = _torchvision_v3()
    pth = tmp_path / "inception_v3.pth"
    torch.save(theirs.state_dict(), pth)
    out = tmp_path / "ours"
    assert main(["weights", "import", "torchvision", str(pth), "--out", str(out)]) == 0
    assert "inception_v3_torchvision" in capsys.readouterr().out
    ours, card = load_weights(out.with_suffix(".safetensors"))
    assert ours.aux is not None and card.model_kwargs["aux_logits"] is True
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.no_grad():
        _close(ours(x), theirs(x))
    without, card = import_torchvision(pth, aux_logits=False)
    assert without.aux is None and card.model_kwargs["aux_logits"] is False
    with torch.no_grad():
        _close(without(x), theirs(x))


@pytest.mark.parametrize("tag", ["tf_in1k", "gluon_in1k"])
def test_timm_weights_same_outputs_and_the_tags_transform(tag):
    torch.manual_seed(4)
    theirs = randomise_batchnorm(timm.create_model("inception_v3", pretrained=False))
    ours, card = import_timm(theirs, tag=tag)
    assert card.model == "inception_v3_torchvision" and card.provenance["origin"].endswith(tag)
    cfg = timm.models.get_pretrained_cfg(f"inception_v3.{tag}")
    assert card.preprocessing.mean == tuple(cfg.mean) and card.preprocessing.crop == 299
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.no_grad():
        _close(ours(x), theirs(x))


# --- the training recipe of section 8 ----------------------------------------------------------


def test_preset_is_section_8s_recipe():
    c = cfg.resolve("inception-v3")
    assert (c.model, c.input_size, c.batch_size, c.epochs) == ("inception_v3", 299, 32, 100)
    assert (c.optimizer, c.rms_decay, c.rms_eps, c.lr) == ("rmsprop", 0.9, 1.0, 0.045)
    assert (c.lr_schedule, c.lr_step_epochs, c.lr_gamma) == ("step", 2.0, 0.94)
    assert (c.grad_clip, c.label_smoothing, c.polyak) == (2.0, 0.1, True)
    assert gd.model_card(c.model).input_size == c.input_size
    with pytest.raises(cfg.ConfigError, match="rms_eps must lie in"):
        cfg.resolve("inception-v3", rms_eps=0.0)


def test_rmsprop_clipping_and_the_step_decay_take_effect():
    """One step of the preset's optimiser through the trainer's update on gradients far
    above the threshold: the weights move by RMSProp (decay 0.9, epsilon 1.0) on the gradient
    clipped to norm 2.0; the learning rate is 0.045 x 0.94^k after 2k epochs."""
    c = cfg.resolve("inception-v3", momentum=0.0, weight_decay=0.0)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    step = TrainStep(model, label_smoothing=c.label_smoothing)
    optimizer = build_optimizer(c, model)
    assert isinstance(optimizer, torch.optim.RMSprop)
    scheduler = build_scheduler(c, optimizer, steps_per_epoch=5)
    x, y = 100 * torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    loss, _, _ = step(x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    assert norm > 10 * c.grad_clip  # clipping must act
    _update(step, optimizer, loss, None, c.grad_clip)
    for p, b, g in zip(model.parameters(), before, grads, strict=True):
        clipped = g * c.grad_clip / (norm + 1e-6)  # clip_grad_norm_'s coefficient
        mean_square = (1 - 0.9) * clipped**2  # from zero
        torch.testing.assert_close(p.detach(), b - 0.045 * clipped / (mean_square.sqrt() + 1.0))
    lrs = []
    for _ in range(20):  # 4 epochs of 5 steps
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs[0] == lrs[9] == pytest.approx(0.045)
    assert lrs[10] == lrs[19] == pytest.approx(0.045 * 0.94)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.045 * 0.94**2)


# --- summary --paper: Table 1 beside the network ------------------------------------------------


def test_table1_beside_the_network_with_its_errata(capsys):
    summary = summarize(counting_model("inception_v3"), 299, name="inception_v3")
    rows = inception_v3_table1(summary)
    printed = [r for r in rows if r.paper_input]
    assert len(printed) == 13 and all(r.input == r.paper_input for r in printed)
    flagged = {r.kind: r.flag for r in rows if r.flag}
    assert flagged == {"5 x Inception": "off", "2 x Inception": "off", "(grid reduction)": "note"}
    assert sum(r.params for r in rows) == summary.total_params == 24_263_240
    assert sum(r.macs for r in rows) == summary.total_macs
    # a fifth Fig. 6 module (the widest of the middle ones) would break "< 25 M parameters"
    fifth = next(r for r in summary.rows if r.name == "inception_b2").params
    assert summary.total_params < 25_000_000 < summary.total_params + fifth
    assert main(["summary", "inception_v3", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "5 x Inception" in out and "24,263,240 parameters" in out and "42 layers" in out
    assert main(["summary", "inception_v3_torchvision", "--paper"]) == 2
    assert "no module 'conv6' of Inception v3's Table 1" in capsys.readouterr().err
