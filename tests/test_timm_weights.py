"""timm's weights through `import_timm`: for each architecture timm shares with us, random
timm weights (BatchNorm statistics made random too) imported into our model give timm's own
outputs; the input transform comes from timm's config; other state dicts are refused."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from goingdeeper.cli import main
from goingdeeper.errors import WeightsError
from goingdeeper.weights import import_timm, load_weights, recognise_timm
from helpers import randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

# timm's architecture -> ours, and the input size its config states
SHARED = {
    "resnet18": ("resnet18", 224),
    "seresnet50": ("se_resnet50", 224),
    "densenet121": ("densenet121", 224),
    "vgg11_bn": ("vgg11_bn", 224),
    "legacy_xception": ("xception", 299),
}


def _randomised(model: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    return randomise_batchnorm(model)


@pytest.mark.parametrize("arch", SHARED)
def test_timm_weights_give_timms_outputs(arch):
    ours_name, size = SHARED[arch]
    theirs = _randomised(timm.create_model(arch, pretrained=False))
    ours, card = import_timm(theirs)
    assert card.model == ours_name and not ours.training
    assert card.provenance["origin"].startswith(f"timm {arch}")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want = theirs(x)
        got = ours(x)
    assert want.abs().max() > 0.1  # not a vanishing output that anything would match
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the transform timm states for these weights, in our terms
    cfg = timm.models.get_pretrained_cfg(arch)
    pre = card.preprocessing
    assert (pre.crop, pre.resize) == (cfg.input_size[-1], math.floor(size / cfg.crop_pct))
    assert pre.mean == tuple(cfg.mean) and pre.std == tuple(cfg.std)
    assert card.pretrained_cfg["interpolation"] == cfg.interpolation


def test_seresnet_is_the_v15_placement_and_a_safetensors_file_imports(tmp_path):
    theirs = _randomised(timm.create_model("seresnet50", pretrained=False, num_classes=5))
    path = tmp_path / "model.safetensors"  # what timm's hub folders hold
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    out = tmp_path / "ours"
    assert (
        main(["weights", "import", "timm", str(path), "--tag", "a1_in1k", "--out", str(out)]) == 0
    )
    ours, card = load_weights(out.with_suffix(".safetensors"))
    assert card.model_kwargs == {"stride_in_1x1": False, "num_classes": 5}
    assert ours.layer2[0].conv2.stride == (2, 2) and card.class_names == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_other_state_dicts_are_refused():
    with pytest.raises(WeightsError, match="not a timm state dict"):
        recognise_timm({"features.0.weight": torch.zeros(64, 3, 11, 11)})  # an AlexNet
    resnet = timm.create_model("resnet18", pretrained=False).state_dict()
    del resnet["layer4.1.conv2.weight"]
    with pytest.raises(WeightsError, match="missing"):
        import_timm(resnet)
    with pytest.raises(WeightsError, match="has no pretrained config"):
        import_timm(timm.create_model("resnet18", pretrained=False), tag="no_such_tag")
