"""BN-Inception against Figure 5 of Ioffe & Szegedy (2015): each module's output channels and
grid, the changes to GoogLeNet (BatchNorm after every convolution, two 3x3s for each 5x5, the
avg/max pools, the stride-2 modules without a 1x1 branch and with a pass-through pool), the
counts derived by hand from the table, the Caffe port's layout, and the input sides the
stride-2 modules refuse. The checks every model shares are in test_models.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import InputError, ModelArgumentError
from goingdeeper.models.bn_inception import BN_INCEPTION_TABLE, InceptionBN, stride2_grids
from goingdeeper.models.inception import SeparableConv1
from helpers import on_meta

# Figure 5's output column: (channels, grid) of each module at 224
FIGURE5_OUTPUTS = {
    "inception3a": (256, 28),
    "inception3b": (320, 28),
    "inception3c": (576, 14),
    "inception4a": (576, 14),
    "inception4b": (576, 14),
    "inception4c": (608, 14),
    "inception4d": (608, 14),
    "inception4e": (1056, 7),
    "inception5a": (1024, 7),
    "inception5b": (1024, 7),
}


def test_figure5_outputs_of_every_module():
    model = on_meta("bn_inception")
    seen = {}
    for name in FIGURE5_OUTPUTS:
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:]))
        )
    assert model(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, 1000)
    assert [row.name for row in BN_INCEPTION_TABLE] == list(FIGURE5_OUTPUTS)
    for name, (channels, side) in FIGURE5_OUTPUTS.items():
        assert seen[name] == (channels, side, side), name
        assert getattr(model, name).out_channels == channels


def test_the_changes_to_googlenet():
    m = gd.create_model("bn_inception")
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    # BN after every convolution (conv1's depthwise and pointwise parts make one layer)
    assert len(bns) == len(convs) - 1 and all(c.bias is None for c in convs)
    assert isinstance(m.conv1, SeparableConv1) and m.conv1.depthwise.out_channels == 3 * 8
    assert not any("LocalResponseNorm" in type(x).__name__ for x in m.modules())
    modules = [getattr(m, row.name) for row in BN_INCEPTION_TABLE]
    # no 5x5 anywhere: a 1x1 reduction then two 3x3s
    assert {
        c.kernel_size for mod in modules for c in mod.modules() if isinstance(c, nn.Conv2d)
    } == {
        (1, 1),
        (3, 3),
    }
    for row, mod in zip(BN_INCEPTION_TABLE, modules, strict=True):
        pool = mod.branch_pool.pool
        assert isinstance(pool, nn.AvgPool2d if row.pool == "avg" else nn.MaxPool2d), row.name
        if row.name in ("inception3c", "inception4e"):  # the grid reductions
            assert mod.branch1x1 is None and not hasattr(mod.branch_pool, "proj")
            assert pool.stride == 2 and isinstance(pool, nn.MaxPool2d)
            assert mod.branch3x3.conv.conv.stride == (2, 2)
            assert mod.branch3x3dbl.conv2.conv.stride == (2, 2)
        else:
            assert mod.branch_pool.proj.conv.out_channels == row.pool_proj and pool.stride == 1
    # 5b is the one module after 3c/4e with a max pool; 4a-4d and 5a average
    assert [r.name for r in BN_INCEPTION_TABLE if r.pool == "max" and r.stride == 1] == [
        "inception5b"
    ]
    assert m.dropout.p == 0.0  # section 4.2.1: "Remove Dropout"
    assert not hasattr(m, "aux1")


def _by_hand(separable: bool, bias: bool) -> tuple[int, int]:
    """Parameters and MACs at 224 from Figure 5's columns: each convolution k*k*cin*cout
    weights (+ cout biases) + 2*cout BatchNorm, times the output area for MACs."""
    params = macs = 0

    def conv(cin: int, cout: int, k: int, side: int, bn: bool = True) -> None:
        nonlocal params, macs
        params += k * k * cin * cout + (cout if bias else 0) + (2 * cout if bn else 0)
        macs += k * k * cin * cout * side * side

    if separable:  # 3 -> 24 depthwise 7x7/2 (no BN), then a 1x1 to 64
        params += 3 * 8 * 49 + (24 if bias else 0)
        macs += 3 * 8 * 49 * 112 * 112
        conv(24, 64, 1, 112)
    else:
        conv(3, 64, 7, 112)
    conv(64, 64, 1, 56)
    conv(64, 192, 3, 56)
    cin, side = 192, 28
    for _, c1, c3r, c3, d3r, d3, _, proj, stride in BN_INCEPTION_TABLE:
        out = side // stride
        if c1:
            conv(cin, c1, 1, side)
        conv(cin, c3r, 1, side)
        conv(c3r, c3, 3, out)
        conv(cin, d3r, 1, side)
        conv(d3r, d3, 3, side)
        conv(d3, d3, 3, out)
        if proj:
            conv(cin, proj, 1, side)
        cin, side = c1 + c3 + d3 + (proj or cin), out
    params += cin * 1000 + 1000
    macs += cin * 1000
    return params, macs


def test_counts_by_hand_from_figure5():
    paper = gd.model_costs("bn_inception")
    assert (paper.params, paper.macs) == _by_hand(separable=True, bias=False)
    caffe = gd.model_costs("bn_inception_caffe")
    assert (caffe.params, caffe.macs) == _by_hand(separable=False, bias=True)
    # the paper's text says 13.6 M parameters; its own Figure 5 gives 11.3 M
    assert round(paper.params / 1e6, 1) == 11.3 and round(caffe.params / 1e6, 1) == 11.3


def test_caffe_port_layout():
    m = gd.create_model("bn_inception_caffe")
    assert m.conv1.conv.kernel_size == (7, 7) and m.conv1.conv.stride == (2, 2)
    assert all(c.bias is not None for c in m.modules() if isinstance(c, nn.Conv2d))
    pre = gd.model_card("bn_inception_caffe").preprocessing
    assert (pre.channel_order, pre.mean, pre.scale) == ("BGR", (104.0, 117.0, 128.0), 1.0)
    with pytest.raises(ModelArgumentError, match="conv1 must be 'separable' or 'plain'"):
        gd.create_model("bn_inception", conv1="depthwise")


def test_odd_grids_at_the_stride2_modules_are_refused():
    # 224 gives 28 and 14 at inception 3c and 4e; 240 gives 30 then 15: 4e cannot concatenate
    assert stride2_grids(224) is None and stride2_grids(240) == 15
    m = gd.create_model("bn_inception", num_classes=5).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 5)
        with pytest.raises(InputError, match="gives a 15x15 grid at a stride-2 module"):
            m(torch.zeros(1, 3, 240, 240))
    assert m.min_size == 31 and stride2_grids(31) is None


def test_a_stride1_module_keeps_its_grid_and_a_stride2_module_halves_it():
    x = torch.randn(2, 192, 8, 8)
    keep = InceptionBN(192, 64, 64, 64, 64, 96, "avg", 32)
    halve = InceptionBN(192, 0, 128, 160, 64, 96, "max", 0, 2)
    with torch.no_grad():
        assert keep(x).shape == (2, 256, 8, 8)
        y = halve(x)
    assert y.shape == (2, 160 + 96 + 192, 4, 4)
    # the pass-through part is the input max-pooled 3x3/2 (Caffe's rounding up)
    pooled = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
    assert torch.equal(y[:, 256:], pooled)


def test_cards():
    card = gd.model_card("bn_inception")
    assert (card.arxiv, card.year, card.input_size) == ("1502.03167", 2015, 224)
    assert "4.82%" in card.top5_error and "4.9%" in card.top5_error
    order = gd.list_models()
    assert order.index("googlenet_naive") + 1 == order.index("bn_inception")


def test_the_preset_is_section_4_2_1_applied_to_googlenets_recipe():
    from goingdeeper.train import config as cfg

    bn, googlenet = cfg.resolve("bn-inception"), cfg.resolve("paper")
    assert (bn.model, bn.batch_size, bn.momentum) == ("bn_inception", 32, 0.9)  # section 4.2
    assert bn.lr == pytest.approx(30 * 0.0015)  # BN-x30: 30 x Inception's initial rate
    assert bn.weight_decay == pytest.approx(googlenet.weight_decay / 5)  # "reduce ... by 5"
    assert bn.lr_step_epochs == pytest.approx(googlenet.lr_step_epochs / 6)  # "6 times faster"
    assert bn.lr_gamma == googlenet.lr_gamma and bn.lr_schedule == googlenet.lr_schedule
    assert bn.recipe == googlenet.recipe and bn.photometric is False  # fewer distortions
    assert bn.shuffle and bn.aux_weight == 0.0
    model = gd.create_model(bn.model)
    assert model.dropout.p == 0.0  # "Remove Dropout"


def test_summary_paper_flags_the_figure5_rows_and_total_that_do_not_add_up(capsys):
    from goingdeeper.analysis import format_paper, summarize
    from goingdeeper.analysis.paper import BN_INCEPTION_FIGURE5, paper_comparison
    from goingdeeper.cli import main

    summary = summarize(on_meta("bn_inception"), 224, name="bn_inception")
    rows, totals = paper_comparison(summary, BN_INCEPTION_FIGURE5)
    flagged = {r.name for r in rows if r.flag}
    assert flagged == {"inception3c", "inception4c", "inception4d", "inception4e"}
    by_name = {r.name: r for r in rows}
    assert by_name["inception4c"].output == "14x14x608" and by_name["inception4c"].printed
    assert by_name["inception5b"].output == by_name["inception5b"].printed == "7x7x1024"
    [params] = totals
    assert params.printed == 13.6e6 and params.exact == 11_278_528 and params.flag
    text = format_paper(summary)
    assert "off. Figure 5's own columns give 11.3 M" in text and "4.82% top-5 (test)" in text
    assert main(["summary", "bn_inception_caffe", "--paper", "--format", "markdown"]) == 0
    assert "| inception4e | 14x14x1024 | 7x7x1056 |" in capsys.readouterr().out
