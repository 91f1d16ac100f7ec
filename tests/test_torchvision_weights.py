"""torchvision's weights through the one importer, `import_torchvision`, against torchvision's
own models: the architecture recognised from the tensors alone, the same outputs as the
torchvision model the weights came from (GoogLeNet with its aux heads in training too, and its
hidden input transform stated as the card's preprocessing), BatchNorm statistics made random so
that no mapping error can hide, legacy DenseNet keys, .pth files, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from goingdeeper.cli import main
from goingdeeper.errors import WeightsError
from goingdeeper.models.densenet import DenseNet
from goingdeeper.models.resnet import ResNet
from goingdeeper.preprocess import IMAGENET_RGB, TORCHVISION_GOOGLENET, Preprocessing
from goingdeeper.weights import import_torchvision, load_weights, recognise
from helpers import randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")


def _meta_state(name: str, **kwargs) -> dict[str, torch.Tensor]:
    """torchvision's state dict of `name`: its keys and shapes, no storage."""
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None, **kwargs).state_dict()


# --- one importer, the architecture recognised from the tensors ---------------------------------


@pytest.mark.parametrize(
    "theirs, ours",
    [
        ("googlenet", "googlenet_torchvision"),
        ("alexnet", "alexnet_torchvision"),
        ("vgg11_bn", "vgg11_bn"),
        ("resnet34", "resnet34"),
        ("resnet152", "resnet152"),
        ("densenet121", "densenet121"),
        ("densenet201", "densenet201"),
    ],
)
def test_the_architecture_is_recognised_from_the_tensors(theirs, ours):
    kwargs = {"init_weights": False} if theirs.startswith(("googlenet", "vgg")) else {}
    found = recognise(_meta_state(theirs, num_classes=7, **kwargs))
    assert found.model == ours and found.kwargs["num_classes"] == 7


def test_one_importer_for_resnet_and_densenet_and_a_clear_error_for_the_rest():
    resnet = torchvision.models.resnet18(weights=None, num_classes=3).state_dict()
    densenet = torchvision.models.densenet121(weights=None, num_classes=3).state_dict()
    for state, name, network in ((resnet, "resnet18", ResNet), (densenet, "densenet121", DenseNet)):
        model, card = import_torchvision(state)
        assert card.model == name and type(model) is network
        assert card.preprocessing == IMAGENET_RGB and model.num_classes == 3
    message = (
        "not a torchvision state dict of googlenet, inception_v3, alexnet, vgg, resnet or densenet"
    )
    for state in ({"fc.weight": torch.zeros(2, 2)}, {}, _meta_state("mobilenet_v2")):
        with pytest.raises(WeightsError, match=message):
            import_torchvision(state)
        with pytest.raises(WeightsError, match=message):
            recognise(state)


# --- GoogLeNet ------------------------------------------------------------------------------------


def _torchvision_googlenet(**kwargs) -> nn.Module:
    torch.manual_seed(1)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, **kwargs)
    return randomise_batchnorm(model)


def test_googlenet_same_outputs_in_eval():
    theirs = _torchvision_googlenet(transform_input=False).eval()
    ours, card = import_torchvision(theirs)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff <= 1e-5
    assert card.model == "googlenet_torchvision" and len(card.class_names) == 1000


def test_googlenet_same_aux_outputs_in_training():
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


def test_googlenet_input_transform_is_explicit_preprocessing():
    """torchvision hides (x - 0.5) / 0.5 in the model; our card states it instead."""
    theirs = _torchvision_googlenet(transform_input=True).eval()
    ours, card = import_torchvision(theirs)
    assert card.preprocessing == TORCHVISION_GOOGLENET
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8))
    imagenet = Preprocessing()  # what torchvision's transform_input expects to be fed
    with torch.no_grad():
        expected = theirs(imagenet(img).unsqueeze(0))
        got = ours(card.preprocessing(img).unsqueeze(0))
    assert (expected - got).abs().max() <= 1e-4


def test_googlenet_from_pth_file(tmp_path):
    theirs = _torchvision_googlenet().eval()
    torch.save(theirs.state_dict(), tmp_path / "googlenet.pth")
    ours, _ = import_torchvision(tmp_path / "googlenet.pth")
    assert ours.aux1 is not None
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        import_torchvision(tmp_path / "junk.pth")


# --- AlexNet and VGG ------------------------------------------------------------------------------


def _narrow_torchvision_vgg(name: str, width: int = 32, classes: int = 10) -> nn.Module:
    """torchvision's own VGG with a narrow classifier: its features built on the meta device
    and initialised as torchvision does, so that no 100 M-weight fc6 is ever filled."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None, init_weights=False)
    model.features.to_empty(device="cpu")
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, width),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(width, width),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(width, classes),
    )
    return model


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg11_bn_narrow"])
def test_alexnet_and_vgg_same_outputs(name):
    if name.endswith("_narrow"):
        name = name.removesuffix("_narrow")
        theirs = randomise_batchnorm(_narrow_torchvision_vgg(name)).eval()
    else:
        theirs = getattr(torchvision.models, name)(weights=None).eval()
    ours, card = import_torchvision(theirs)
    assert card.model == ("alexnet_torchvision" if name == "alexnet" else name)
    assert card.preprocessing == IMAGENET_RGB and not ours.training
    x = torch.randn(2, 3, 224 if name == "alexnet" else 64, 224 if name == "alexnet" else 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5
    if card.num_classes == 1000:
        assert len(card.class_names) == 1000 and card.model_kwargs == {"num_classes": 1000}
    else:
        assert card.model_kwargs == {"num_classes": 10, "fc_width": 32}


# --- ResNet and DenseNet --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "densenet121"])
def test_resnet_and_densenet_same_outputs(arch):
    torch.manual_seed(1)
    theirs = randomise_batchnorm(getattr(torchvision.models, arch)(weights=None)).eval()
    ours, card = import_torchvision(theirs)
    assert card.model == arch and card.num_classes == 1000 and len(card.class_names) == 1000
    assert card.preprocessing.mean == (0.485, 0.456, 0.406) and card.preprocessing.crop == 224
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5


def test_densenet_legacy_keys_from_a_pth_file(tmp_path):
    theirs = torchvision.models.densenet121(weights=None, num_classes=10)
    state = theirs.state_dict()
    legacy = {}
    for key, value in state.items():  # as torchvision's published .pth files spell them
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            if ".denselayer" in key and f".{part}." in key:
                key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        legacy[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    ours, card = import_torchvision(path)
    assert card.model == "densenet121" and card.num_classes == 10 and card.class_names == []
    assert card.provenance["source"] == str(path)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize(
    "arch, tag, resize",
    [("resnet50", "IMAGENET1K_V2", 232), ("resnet18", "IMAGENET1K_V1", 256)]
    + [("vgg16", "IMAGENET1K_FEATURES", 256)],
)
def test_a_tag_gives_torchvision_s_own_transform_for_those_weights(arch, tag, resize):
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    model, card = import_torchvision(state, tag=tag)
    assert card.model == arch and card.preprocessing.resize == resize and not model.training
    theirs = torchvision.models.get_model_weights(arch)[tag].transforms()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    torch.testing.assert_close(card.preprocessing(photo), theirs(photo), atol=1e-5, rtol=1e-6)


def test_resnet_errors(tmp_path):
    state = torchvision.models.resnet34(weights=None, num_classes=7).state_dict()
    with pytest.raises(WeightsError, match="no resnet34 weights 'IMAGENET1K_V9'"):
        import_torchvision(state, tag="IMAGENET1K_V9")
    with pytest.raises(WeightsError, match="not a ResNet of Table 1"):
        import_torchvision({k: v for k, v in state.items() if not k.startswith("layer4.2")})
    # a DenseNet's blocks without its dense layers or classifier
    densenet = torchvision.models.densenet121(weights=None, num_classes=7).state_dict()
    no_classifier = {k: v for k, v in densenet.items() if not k.startswith("classifier.")}
    with pytest.raises(WeightsError, match="not a torchvision densenet"):
        import_torchvision(no_classifier)
    with pytest.raises(WeightsError, match="not a DenseNet-BC of Table 1"):  # densenet161
        import_torchvision(_meta_state("densenet161"))
    with pytest.raises(WeightsError, match="no such file"):
        import_torchvision(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        import_torchvision(tmp_path / "junk.pth")


# --- through the command line, one model of each family --------------------------------------

FAMILIES = {  # torchvision's architecture -> ours
    "googlenet": "googlenet_torchvision",
    "alexnet": "alexnet_torchvision",
    "vgg11_bn": "vgg11_bn",
    "resnet18": "resnet18",
    "densenet121": "densenet121",
}


@pytest.mark.parametrize("arch", FAMILIES)
def test_cli_import_of_each_family_gives_torchvisions_outputs(arch, tmp_path, capsys):
    """Random torchvision weights saved as a .pth file, `goingdeeper weights import
    torchvision FILE`, loaded back: torchvision's outputs within 1e-5."""
    torch.manual_seed(11)
    if arch == "vgg11_bn":  # a narrow classifier: the same layers without 100 M weights
        theirs = randomise_batchnorm(_narrow_torchvision_vgg(arch)).eval()
    else:
        kwargs = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
        theirs = randomise_batchnorm(getattr(torchvision.models, arch)(weights=None, **kwargs))
    pth = tmp_path / f"{arch}.pth"
    torch.save(theirs.eval().state_dict(), pth)
    out = tmp_path / "ours"
    assert main(["weights", "import", "torchvision", str(pth), "--out", str(out)]) == 0
    assert FAMILIES[arch] in capsys.readouterr().out
    ours, card = load_weights(out.with_suffix(".safetensors"))
    assert card.model == FAMILIES[arch] and card.provenance["source"] == str(pth)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = theirs(x)
        torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_cli_tag_sets_the_transform_and_bad_tags_are_refused(tmp_path, capsys):
    pth = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), pth)
    out = tmp_path / "r18"
    args = ["weights", "import", "torchvision", str(pth), "--out", str(out)]
    assert main([*args, "--tag", "IMAGENET1K_V9"]) == 2
    assert "no resnet18 weights 'IMAGENET1K_V9'; it has IMAGENET1K_V1" in capsys.readouterr().err
    assert not out.with_suffix(".safetensors").exists()
    bvlc = ["weights", "import", "bvlc", str(pth), "--out", str(out), "--tag", "x"]
    assert main(bvlc) == 2 and "--tag" in capsys.readouterr().err
    assert main([*args, "--tag", "IMAGENET1K_V1"]) == 0
    _, card = load_weights(out.with_suffix(".safetensors"))
    assert card.preprocessing.resize == 256 and "IMAGENET1K_V1" in card.preprocessing.note
