"""pretrainedmodels' BN-Inception through `weights import pretrainedmodels`: its network with
random weights (BatchNorm statistics and convolution biases random too), saved as its published
file is, imported through the CLI, gives its own outputs; the card states its Caffe-style input;
the catalogue lists the published file at the address pretrainedmodels' settings give, and a
file placed by name goes through the same importer."""

from __future__ import annotations

import hashlib

import pretrainedmodels
import pytest
import torch
from torch import nn

from goingdeeper.cli import main
from goingdeeper.weights import (
    WeightsEntry,
    catalogue,
    get_entry,
    import_pretrainedmodels,
    load_pretrained,
    load_weights,
    register_weights,
)
from helpers import randomise_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = pretrainedmodels.pretrained_settings["bninception"]["imagenet"]


@pytest.fixture(scope="module")
def theirs() -> nn.Module:
    """pretrainedmodels' BNInception with random weights, every BatchNorm and bias random."""
    torch.manual_seed(5)
    model = pretrainedmodels.models.bninception(pretrained=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.1, 0.1)
    return randomise_batchnorm(model)


@pytest.fixture(scope="module")
def published_file(theirs, tmp_path_factory):
    """Their state dict saved as the published file is: without `num_batches_tracked`, which
    the PyTorch of its day did not have."""
    state = {k: v for k, v in theirs.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path_factory.mktemp("cadene") / "bn_inception-test.pth"
    torch.save(state, path)
    return path


def bgr_batch() -> torch.Tensor:
    """Two images as their forward takes them: BGR 0-255 minus the mean."""
    torch.manual_seed(6)
    mean = torch.tensor(SETTINGS["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    return torch.rand(2, 3, 224, 224) * 255 - mean


def test_the_cli_import_gives_their_outputs(theirs, published_file, tmp_path, capsys):
    out = tmp_path / "bn_inception"
    args = ["weights", "import", "pretrainedmodels", str(published_file), "--out", str(out)]
    assert main(args) == 0
    assert "bn_inception_caffe" in capsys.readouterr().out
    ours, card = load_weights(out.with_suffix(".safetensors"))
    x = bgr_batch()
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    scale = want.abs().max()
    assert scale > 0.1  # not a vanishing output that anything would match
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * scale.item())
    assert card.model == "bn_inception_caffe" and card.provenance["origin"].endswith("bninception")
    pre = card.preprocessing
    assert pre.channel_order == SETTINGS["input_space"] == "BGR"
    assert pre.scale == 1.0 and SETTINGS["input_range"] == [0, 255]
    assert list(pre.mean) == SETTINGS["mean"] and list(pre.std) == SETTINGS["std"]
    assert pre.crop == SETTINGS["input_size"][-1]
    assert len(card.class_names) == len(card.class_ids) == SETTINGS["num_classes"]


def test_their_state_dict_with_its_counters_and_other_class_counts_import(theirs):
    ours, card = import_pretrainedmodels(theirs.state_dict())  # num_batches_tracked included
    assert card.model == "bn_inception_caffe" and card.num_classes == 1000
    small = pretrainedmodels.models.bninception(num_classes=7, pretrained=None)
    ours, card = import_pretrainedmodels(small)
    assert ours.fc.out_features == 7 and card.class_names == []


def test_a_wrong_file_or_option_is_one_line(tmp_path, capsys):
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    args = ["weights", "import", "pretrainedmodels", str(wrong), "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "not a pretrainedmodels state dict of bninception" in err and "\n" not in err
    assert main([*args, "--tag", "imagenet"]) == 2 and "--tag" in capsys.readouterr().err
    assert main([*args, "--aux"]) == 2 and "--aux" in capsys.readouterr().err
    assert not list(tmp_path.glob("x*"))


def test_the_catalogue_entry_is_pretrainedmodels_published_file():
    entry = get_entry("bn_inception_caffe.cadene_in1k")
    assert entry.url == SETTINGS["url"] and entry.source == "pretrainedmodels"
    # torch.hub's check: the hex digits after the last '-' of the file name start the SHA-256
    assert entry.filename.rsplit("-", 1)[1].split(".")[0] == entry.hash_value
    assert entry.hash_algorithm == "sha256"
    assert get_entry("bn_inception_caffe") is entry  # its default weights
    assert (entry.top1, entry.top5) == (73.524, 91.562)


def test_a_file_placed_by_name_goes_through_the_importer(
    published_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("GOINGDEEPER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(catalogue, "_registered", {})
    body = published_file.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    entry = register_weights(
        WeightsEntry(
            model="bn_inception_caffe",
            tag="t_in1k",
            source="pretrainedmodels",
            url=f"http://127.0.0.1/bn_inception-{digest[:9]}.pth",
            hash_algorithm="sha256",
            hash_value=digest[:9],
            licence="test",
            transform="test",
            top1=None,
            top5=None,
            protocol="made by the test",
        )
    )
    assert main(["weights", "import", entry.name, str(published_file)]) == 0
    placed, card = load_pretrained(entry.name)
    direct, _ = import_pretrainedmodels(published_file)
    for a, b in zip(placed.state_dict().values(), direct.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert card.provenance["weights"] == entry.name and card.provenance["sha256"] == digest
