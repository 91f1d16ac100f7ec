"""The analyzer against its oracles: exact totals, torch.utils.flop_counter (training steps;
every model's inference count is checked in test_models.py), torchvision's parameter count,
the published tables and the notes' bottleneck arithmetic."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import goingdeeper as gd
from goingdeeper.analysis import (
    bottleneck_comparison,
    count_params_macs,
    format_summary,
    format_table1,
    forward_trace,
    summarize,
    table1_comparison,
    training_step_macs,
)
from goingdeeper.analysis.paper import paper_summary


def test_googlenet_exact_totals():
    model = gd.create_model("googlenet")
    assert count_params_macs(model, 224) == (6_998_552, 1_582_671_872)
    assert summarize(model, 224, aux=True).total_params == 13_378_280
    assert sum(p.numel() for p in model.parameters()) == 13_378_280


def test_torchvision_layout_counts_equal_torchvision():
    ours = gd.create_model("googlenet_torchvision", aux_logits=False)
    theirs = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert count_params_macs(ours, 224)[0] == n_theirs == 6_624_904
    assert round(count_params_macs(ours, 224)[1] / 1e9, 3) == 1.498


def flop_counter_step_macs(model: torch.nn.Module, size: int) -> tuple[int, int]:
    """Multiply-adds per image of a forward and backward pass in training mode, as PyTorch
    counts them: all, and the convolutions'."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(torch.zeros(2, 3, size, size))
        outs = [out] if isinstance(out, torch.Tensor) else [o for o in out if o is not None]
        sum(o.sum() for o in outs).backward()
    by_op = counter.get_flop_counts()["Global"]
    conv = by_op[torch.ops.aten.convolution] + by_op[torch.ops.aten.convolution_backward]
    return counter.get_total_flops() // 4, conv // 4  # two images, two FLOPs per MAC


@pytest.mark.parametrize("name", ["googlenet_torchvision", "torchvision googlenet", "vgg11"])
def test_training_step_macs_equal_flop_counter(name):
    """Forward with the aux heads, every weight gradient, every input gradient but the image's."""
    if name == "torchvision googlenet":
        model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    else:
        model = gd.create_model(name)
    size = 224 if "googlenet" in name else 64
    counts = training_step_macs(model, size)
    assert (counts["total"], counts["convolution"]) == flop_counter_step_macs(model, size)
    assert counts["weight_grad"] == counts["forward"] > counts["input_grad"] > 0
    first_layer = forward_trace(model, size).steps[0]  # reads the image: needs no gradient
    assert counts["forward"] - counts["input_grad"] == first_layer.macs


def test_stage_rows_follow_table1():
    rows = {r.name: r for r in summarize(gd.create_model("googlenet"), 224).rows}
    assert rows["conv1"].patch == "7x7/2" and rows["conv1"].output == (64, 112, 112)
    assert rows["conv2"].depth == 2 and rows["conv2"].patch == "3x3/1"
    assert rows["conv2"].channels["ch3x3red"] == 64 and rows["conv2"].channels["ch3x3"] == 192
    assert rows["inception4e"].channels == {
        "ch1x1": 256,
        "ch3x3red": 160,
        "ch3x3": 320,
        "ch5x5red": 32,
        "ch5x5": 128,
        "pool_proj": 128,
    }
    assert rows["inception5b"].output == (1024, 7, 7) and rows["avgpool"].patch == "7x7/1"
    assert sum(r.depth for r in rows.values()) == 22  # "22 layers deep when counting only
    assert rows["fc"].macs == 1_024_000  # layers with parameters" (section 5)


def test_paper_mode_flags_the_rows_that_do_not_add_up():
    rows = {r.name: r for r in table1_comparison(paper_summary())}
    assert {n for n, r in rows.items() if r.flag} == {"conv1", "inception4c", "inception5a"}
    assert rows["inception4c"].exact_params_k == pytest.approx(497.5)
    assert rows["inception5a"].exact_params_k == pytest.approx(1018.0)
    assert rows["inception5a"].exact_ops_m == pytest.approx(51.08, abs=0.01)
    assert rows["conv1"].exact_params_k * 1024 == 9408
    paper_k = sum(r.paper_params_k or 0 for r in rows.values())
    paper_m = sum(r.paper_ops_m or 0 for r in rows.values())
    assert round(paper_k, 1) == 6797.7 and paper_m == 1502  # "6.8M" and "1.5G" are sums
    text = format_table1(paper_summary())
    assert "depthwise-separable" in text and "1,582,671,872 MACs" in text


def test_separable_conv1_matches_table1_row():
    model = gd.create_model("googlenet", conv1="separable", aux_logits=False)
    rows = {r.name: r for r in table1_comparison(summarize(model, 224))}
    assert not rows["conv1"].flag
    assert rows["conv1"].exact_ops_m == pytest.approx(34.0, abs=0.1)


def test_bottleneck_arithmetic_of_the_notes():
    costs = {(c.module, c.branch): c for c in bottleneck_comparison(224)}
    c4a = costs[("inception4a", "branch5x5")]
    assert c4a.naive_macs == 112_896_000 and c4a.reduced_macs == 5_268_480  # 112.9M vs 5.3M
    c3a = costs[("inception3a", "branch5x5")]
    assert c3a.naive_macs == 120_422_400 and c3a.reduced_macs == 12_443_648  # 120.4M vs 12.4M
    assert (
        costs[("inception3a", "branch1x1")].naive_macs
        == costs[("inception3a", "branch1x1")].reduced_macs
    )


def test_formats():
    summary = summarize(gd.create_model("googlenet"), 224, name="googlenet")
    table = format_summary(summary)
    assert "1,582,671,872 MACs" in table and "3,165,343,744 FLOPs" in table
    data = json.loads(format_summary(summary, "json"))
    assert data["total_macs"] * 2 == data["total_flops"]
    rows = list(csv.DictReader(io.StringIO(format_summary(summary, "csv"))))
    assert rows[-1]["layer"] == "total" and int(rows[-1]["params"]) == 6_998_552
    assert sum(int(r["macs"]) for r in rows[:-1]) == 1_582_671_872
    assert format_summary(summary, "markdown").startswith("| layer |")
    layers = summarize(gd.create_model("googlenet"), 224, detail="layers")
    assert sum(r.macs for r in layers.rows) == 1_582_671_872
    assert any(r.name == "inception4a.branch5x5.conv.conv" for r in layers.rows)


def test_summary_does_not_change_the_model():
    model = gd.create_model("googlenet_bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, 224, aux=True)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
