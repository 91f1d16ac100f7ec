"""Inception-v4, Inception-ResNet-v1 and -v2 against the paper and timm: the widths and sizes
of each stage at 299 (the stems of Figs. 3 and 14, Table 1's k, l, m, n), the residual
join (scaled, then added, then the ReLU), and timm's random weights imported with their
outputs, through the API and the command line. The checks every model shares are in
test_models.py and test_inference.py."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import goingdeeper as gd
from goingdeeper.cli import main
from goingdeeper.errors import ModelArgumentError, WeightsError
from goingdeeper.models.inception_v4 import REDUCTION_A_TABLE, ResidualMixed
from goingdeeper.train import config as cfg
from goingdeeper.weights import load_weights
from goingdeeper.weights.timm import import_timm, recognise_timm
from helpers import on_meta, randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = 107  # above the smallest input (75)

# name: stem output (35x35), after Reduction-A (17x17), after Reduction-B (8x8), features
WIDTHS = {
    "inception_v4": (384, 1024, 1536, 1536),  # Figs. 3, 7 (n + m + 384), 8
    "inception_resnet_v1": (256, 896, 1792, 1792),  # Figs. 14, 7, 12
    "inception_resnet_v2": (384, 1152, 2144, 2144),  # Figs. 3, 7, 18 (Fig. 17's 1154: 1152)
    "inception_resnet_v2_timm": (320, 1088, 2080, 1536),  # the release: Mixed_5b, conv2d_7b
}
REPEATS = {
    "inception_v4": (4, 7, 3),  # Fig. 9
    "inception_resnet_v1": (5, 10, 5),  # Fig. 15
    "inception_resnet_v2": (5, 10, 5),
    "inception_resnet_v2_timm": (10, 20, 10),
}


@pytest.mark.parametrize("name", WIDTHS)
def test_stage_widths_sizes_and_repeats_at_299(name):
    model = on_meta(name)
    seen = {}
    for module in model.feature_chain():
        model.get_submodule(module).register_forward_hook(
            lambda m, i, o, n=module: seen.__setitem__(n, tuple(o.shape[1:]))
        )
    with torch.no_grad():
        model(torch.zeros(1, 3, 299, 299, device="meta"))
    chain = model.feature_chain()
    stem = seen[chain[chain.index(next(n for n in chain if n.endswith("_a1"))) - 1]]
    stem_out, red_a, red_b, features = WIDTHS[name]
    assert stem == (stem_out, 35, 35)
    assert seen["reduction_a"] == (red_a, 17, 17) and seen["reduction_b"] == (red_b, 8, 8)
    assert seen[chain[-1]] == (features, 8, 8) and model.num_features == features
    counts = [sum(1 for n in chain if re.search(rf"^inception_\w*{k}\d+$", n)) for k in "abc"]
    assert tuple(counts) == REPEATS[name]


def test_table1_k_l_m_n_of_reduction_a():
    """Table 1: Inception-v4 192, 224, 256, 384; -ResNet-v1 192, 192, 256, 384; -v2 256, 256,
    384, 384 (k, l, m: the 1x1 -> 3x3 -> 3x3/2 branch; n: the lone 3x3/2)."""
    assert REDUCTION_A_TABLE["inception_v4"] == (192, 224, 256, 384)
    assert REDUCTION_A_TABLE["inception_resnet_v1"] == (192, 192, 256, 384)
    assert REDUCTION_A_TABLE["inception_resnet_v2"] == (256, 256, 384, 384)
    for name, (k, l, m, n) in REDUCTION_A_TABLE.items():  # noqa: E741 - Table 1's l
        block = on_meta(name).reduction_a
        assert block.branch0[0].conv.out_channels == n and block.branch0[0].conv.stride == (2, 2)
        assert [c.conv.out_channels for c in block.branch1] == [k, l, m]
        assert isinstance(block.branch2[0], nn.MaxPool2d)


def test_residual_join_is_scaled_added_then_relu():
    torch.manual_seed(0)
    model = gd.create_model("inception_resnet_v1").eval()
    block = model.inception_resnet_a1
    assert isinstance(block, ResidualMixed) and block.scale == 0.17
    assert block.project.bias is not None and block.project.out_channels == 256
    x = torch.randn(2, 256, 9, 9)
    with torch.no_grad():
        branches = torch.cat([block.branch0(x), block.branch1(x), block.branch2(x)], 1)
        want = torch.relu(x + 0.17 * block.project(branches))
        torch.testing.assert_close(block(x), want)
    scales = {n[:-1]: m.scale for n, m in model.named_children() if isinstance(m, ResidualMixed)}
    assert set(scales.values()) <= {0.17, 0.10, 0.20}  # within the paper's 0.1 to 0.3
    timm_layout = on_meta("inception_resnet_v2_timm")
    last = timm_layout.inception_resnet_c10
    assert last.relu is None and last.scale == 1.0  # the release's Block8(no_relu=True)
    assert timm_layout.inception_resnet_c9.relu is not None


def test_switches_are_checked():
    with pytest.raises(ModelArgumentError, match="stem must be one of"):
        gd.create_model("inception_v4", stem="fig5")
    with pytest.raises(ModelArgumentError, match="repeats must be three positive counts"):
        gd.create_model("inception_resnet_v2", repeats=(1, 0, 1))


# --- timm's weights ---------------------------------------------------------------------------


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "theirs, ours, tag",
    [
        ("inception_v4", "inception_v4", "tf_in1k"),
        ("inception_resnet_v2", "inception_resnet_v2_timm", "tf_ens_adv_in1k"),
    ],
)
def test_timm_weights_same_outputs(theirs, ours, tag):
    torch.manual_seed(5)
    model = randomise_batchnorm(timm.create_model(theirs, pretrained=False, num_classes=6))
    imported, card = import_timm(model, tag=tag)
    assert card.model == ours and card.model_kwargs == {"num_classes": 6}
    cfg = timm.models.get_pretrained_cfg(f"{theirs}.{tag}")
    assert card.preprocessing.mean == tuple(cfg.mean) == (0.5, 0.5, 0.5)
    assert card.preprocessing.crop == 299 and card.provenance["origin"] == f"timm {theirs}.{tag}"
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.no_grad():
        _close(imported(x), model(x))


def test_cli_import_of_a_timm_safetensors_file(tmp_path, capsys):
    torch.manual_seed(6)
    theirs = randomise_batchnorm(timm.create_model("inception_v4", pretrained=False))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    out = tmp_path / "ours"
    assert main(["weights", "import", "timm", str(path), "--out", str(out)]) == 0
    assert "inception_v4" in capsys.readouterr().out
    ours, card = load_weights(out.with_suffix(".safetensors"))
    assert card.model == "inception_v4" and len(card.class_names) == 1000
    x = torch.randn(2, 3, SMALL, SMALL)
    with torch.no_grad():
        _close(ours(x), theirs(x))


def test_a_truncated_timm_state_is_refused():
    with torch.device("meta"):
        state = timm.create_model("inception_resnet_v2", pretrained=False).state_dict()
    assert recognise_timm(state).model == "inception_resnet_v2_timm"
    del state["repeat_1.19.conv2d.weight"]
    with pytest.raises(WeightsError, match="missing"):
        import_timm(state, tag="tf_in1k")


def test_preset_is_section_4s_recipe():
    c = cfg.resolve("inception-v4")
    assert (c.model, c.input_size) == ("inception_v4", 299)
    assert (c.optimizer, c.rms_decay, c.rms_eps, c.lr) == ("rmsprop", 0.9, 1.0, 0.045)
    assert (c.lr_schedule, c.lr_step_epochs, c.lr_gamma) == ("step", 2.0, 0.94)
    assert c.polyak and c.polyak_average == "ema"
    assert gd.model_card(c.model).input_size == c.input_size
    for model in ("inception_resnet_v1", "inception_resnet_v2"):  # the same recipe
        assert cfg.resolve("inception-v4", model=model).model == model
