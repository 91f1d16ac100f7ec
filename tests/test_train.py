"""Training: exact resume, atomic checkpoints, NaN stop, distributed = single process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial
from typing import NamedTuple

import pytest
import torch
from torch import nn

from goingdeeper import create_model
from goingdeeper.errors import ConfigError, TrainingError
from goingdeeper.models import Classifier
from goingdeeper.models.base import renormalize_filters
from goingdeeper.registry import build_shell
from goingdeeper.train import (
    CacheError,
    FrozenPrefixCache,
    TrainStep,
    fit,
    freeze,
    frozen_prefix,
    lr_factor,
)
from goingdeeper.train import config as cfg
from goingdeeper.train.build import model_for_run
from goingdeeper.train.checkpoint import load_checkpoint, save_checkpoint
from goingdeeper.train.engine import plateau_divisions, train_one_epoch
from goingdeeper.weights import load_weights

TINY = dict(
    model="lenet5",
    model_args={},
    input_size=32,
    data="digits",
    recipe="simple",
    photometric=False,
    epochs=3,
    batch_size=16,
    lr=0.01,
    lr_schedule="step",
    lr_step_epochs=1.0,
    lr_gamma=0.5,
    limit_train=64,
    limit_test=32,
    workers=0,
    progress=False,
    tensorboard=False,
    plots=False,
    polyak=True,
    polyak_decay=0.9,
    log_every=5,
)


def tiny(tmp_path, **changes) -> cfg.TrainConfig:
    return cfg.from_dict({**TINY, "out": str(tmp_path / "run"), **changes})


def test_config_layers_and_errors(tmp_path):
    (tmp_path / "a.toml").write_text("lr = 0.5\nepochs = 2\n")
    (tmp_path / "b.yaml").write_text("epochs: 4\nmodel_args: {aux_logits: false}\n")
    c = cfg.resolve(
        "paper",
        [str(tmp_path / "a.toml"), str(tmp_path / "b.yaml")],
        ["batch_size=8", "interpolations=bilinear,nearest"],
        seed=3,
    )
    assert (c.lr, c.epochs, c.batch_size, c.seed) == (0.5, 4, 8, 3)
    assert c.momentum == 0.9 and c.lr_gamma == 0.96 and c.lr_step_epochs == 8
    # section 5's aux weight 0.3 is the model's, which the paper preset leaves as it is
    assert c.aux_weight is None and build_shell(c.model).aux_weight == 0.3
    assert c.interpolations == ["bilinear", "nearest"] and c.model_args == {"aux_logits": False}
    with pytest.raises(cfg.ConfigError, match="unknown config field"):
        cfg.resolve(overrides=["learning_rate=1"])
    with pytest.raises(cfg.ConfigError, match="expected a int"):
        cfg.resolve(overrides=["epochs=many"])
    with pytest.raises(cfg.ConfigError, match="unknown preset"):
        cfg.resolve("imagenet22k")
    assert set(cfg.list_presets()) >= {"paper", "digits", "mnist-lenet5", "cifar10", "finetune"}


def test_paper_schedule_is_4_percent_every_8_epochs():
    def f(e):
        return lr_factor(
            e,
            schedule="step",
            epochs=100,
            step_epochs=8,
            gamma=0.96,
            warmup_epochs=0,
        )

    assert f(0) == 1 and f(7.99) == 1 and f(8) == pytest.approx(0.96)
    assert f(16) == pytest.approx(0.96**2)


# The papers' recipes, read from the papers: SGD with momentum 0.9 and weight decay 5e-4 (ZFNet
# states none and follows AlexNet), learning rate 0.01 divided by 10 when the validation error
# stops improving; AlexNet: batch 128, 90 epochs, PCA lighting; ZFNet: batch 128, 70 epochs,
# filter RMS capped at 0.1; VGG: batch 256, 74 epochs, scale jitter S in [256, 512].
PAPER_RECIPES = {
    "alexnet": dict(
        model="alexnet", batch_size=128, epochs=90, recipe="alexnet", pca_lighting=True
    ),
    "zfnet": dict(
        model="zfnet",
        batch_size=128,
        epochs=70,
        recipe="zfnet",  # section 3's ten fixed sub-crops
        pca_lighting=False,
    ),
    "vgg": dict(
        model="vgg_d",
        batch_size=256,
        epochs=74,
        recipe="vgg",
        scale_jitter=[256, 512],
        pca_lighting=True,
        lr=1e-3,  # fine-tuned from the S = 384 model, whose stage gives 10^-3
    ),
}
SGD_PLATEAU = dict(
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    nesterov=False,
    weight_decay=5e-4,
    lr_schedule="plateau",
    lr_gamma=0.1,
    warmup_epochs=0.0,
    label_smoothing=0.0,
    polyak=False,
)


@pytest.mark.parametrize("preset", sorted(PAPER_RECIPES))
def test_presets_are_the_papers_recipes(preset):
    c = cfg.resolve(preset).to_dict()
    want = {**SGD_PLATEAU, **PAPER_RECIPES[preset]}
    assert {k: c[k] for k in want} == want
    # the filter renormalisation is the model's own: ZFNet's 0.1 (section 3), none elsewhere
    assert c["max_filter_rms"] is None
    assert build_shell(c["model"]).max_filter_rms == (0.1 if preset == "zfnet" else 0.0)


def test_the_paper_preset_averages_the_iterates_uniformly():
    c = cfg.resolve("paper")
    assert c.polyak and c.polyak_average == "uniform"  # Polyak & Juditsky: the plain mean
    assert c.polyak_start_epoch == 200 and c.epochs == 250  # the last fifth of the run


def test_plateau_divides_when_the_validation_error_stops_improving():
    errors = [0.5, 0.4, 0.45, 0.41, 0.39, 0.39, 0.39, 0.39]
    # patience 2: after 0.45, 0.41 (once); after the two 0.39s that follow 0.39 (twice)
    assert [plateau_divisions(errors[:n], 2) for n in range(1, 9)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert plateau_divisions(errors, 1) == 5
    assert plateau_divisions([0.9, 0.8, 0.7], 1) == 0  # still improving


def test_plateau_schedule_and_uniform_polyak_in_a_run(tmp_path):
    """A learning rate too small to move the error: each epoch after the first is a plateau.
    The uniform average takes the steps of the last two epochs of three."""
    same = dict(lr=1e-9, lr_schedule="plateau", lr_patience=1, lr_gamma=0.1, polyak_start=0.5)
    same.update(polyak_average="uniform", limit_test=16)
    full = fit(tiny(tmp_path / "a", **same))
    errors = [1 - h.test_acc for h in full.history]
    assert plateau_divisions(errors, 1) == 2
    assert [h.lr for h in full.history] == pytest.approx([1e-9, 1e-9, 1e-10])
    state = load_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")
    assert state["scheduler"]["base_lrs"] == pytest.approx([1e-11, 1e-11])  # for epoch 4
    assert state["averaged"]["n_averaged"] == 8  # 4 steps an epoch, epochs 2 and 3
    history = full.history
    assert history[0].polyak_test_acc != history[0].polyak_test_acc  # NaN: not begun
    assert 0 <= history[1].polyak_test_acc <= 1
    _, card = load_weights(tmp_path / "a" / "run" / "model_polyak.safetensors")
    assert card.provenance["polyak_average"] == "uniform"
    assert card.provenance["polyak_from_epoch"] == 2
    fit(tiny(tmp_path / "b", **same, epochs=2))
    resumed = fit(tiny(tmp_path / "b", **same, epochs=3), resume=True)
    assert [h.lr for h in resumed.history] == [h.lr for h in full.history]


def test_loss_is_main_plus_03_aux():
    import goingdeeper as gd

    model = gd.create_model("googlenet", num_classes=4, input_size=96)
    x, y = torch.randn(2, 3, 96, 96), torch.tensor([0, 3])
    torch.manual_seed(5)
    loss, main, _ = TrainStep(model)(x, y)
    torch.manual_seed(5)
    out = model(x)
    ce = torch.nn.functional.cross_entropy
    expected = ce(out.logits, y) + 0.3 * (ce(out.aux1, y) + ce(out.aux2, y))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(main, ce(out.logits, y))


def test_zfnet_filter_renormalisation():
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight.mul_(100)
        conv.weight[0].fill_(0.01)
    renormalize_filters(conv, 0.1)
    rms = conv.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms[1:], torch.full((3,), 0.1), atol=1e-6)
    assert torch.allclose(rms[0], torch.tensor(0.01))  # below the cap: untouched


def test_the_model_declares_its_step_hook_and_a_run_may_override_it(tmp_path):
    """After each optimizer step the trainer calls the model's `after_step`: ZFNet declares
    section 3's renormalisation at 0.1, other models none; `max_filter_rms` in the config
    replaces what the model declares, and refuses to renormalise cached frozen filters."""
    torch.manual_seed(0)
    model = create_model("lenet5")
    assert model.max_filter_rms == 0.0
    model.max_filter_rms = 0.01  # below the RMS of C1's six filters (~0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3]))
    train_one_epoch(TrainStep(model), optimizer, [batch], device=torch.device("cpu"))
    rms = torch.cat(
        [
            m.weight.detach().pow(2).mean((1, 2, 3)).sqrt()
            for m in model.modules()
            if isinstance(m, nn.Conv2d)
        ]
    )
    assert (rms <= 0.01 * (1 + 1e-6)).all()  # float32 rounding of the rescale
    assert (rms > 0.01 * (1 - 1e-6)).sum() >= 6  # C1's six filters at least were rescaled
    zfnet = dict(model="zfnet", model_args={"fc_width": 16}, input_size=224)
    declared, _, _ = model_for_run(tiny(tmp_path, **zfnet), 10)
    assert declared.max_filter_rms == 0.1
    off, _, _ = model_for_run(tiny(tmp_path, **zfnet, max_filter_rms=0.0), 10)
    assert off.max_filter_rms == 0.0
    googlenet = dict(model="googlenet", model_args={"aux_logits": True}, input_size=96)
    assert model_for_run(tiny(tmp_path, **googlenet), 10)[0].aux_weight == 0.3
    assert model_for_run(tiny(tmp_path, **googlenet, aux_weight=1.0), 10)[0].aux_weight == 1.0
    with pytest.raises(cfg.ConfigError, match="exclude each other"):
        model_for_run(tiny(tmp_path, **zfnet, cache_frozen_gb=1.0, freeze=["conv1"]), 10)


def test_the_models_loss_traces_into_one_compiled_graph():
    """`train` compiles TrainStep whole: the model's declared loss (an aux record weighted by
    the model's `aux_weight`) must trace without a graph break, to the eager step's value."""

    class Record(NamedTuple):
        logits: torch.Tensor
        aux: torch.Tensor

    class WithAux(Classifier):
        aux_heads, aux_weight = ("aux",), 0.25

        def __init__(self) -> None:
            super().__init__()
            self.fc, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return Record(self.fc(x), self.aux(x)) if self.training else self.fc(x)

    graphs = []

    def counting(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(0)
    step = TrainStep(WithAux(), label_smoothing=0.1).train()
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    torch._dynamo.reset()
    compiled = torch.compile(step, backend=counting, fullgraph=True, dynamic=False)
    got, want = compiled(x, y), step(x, y)
    torch._dynamo.reset()
    assert len(graphs) == 1
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    ce = partial(nn.functional.cross_entropy, label_smoothing=0.1)
    model = step.model
    torch.testing.assert_close(want[0], ce(model.fc(x), y) + 0.25 * ce(model.aux(x), y))


def test_resume_compares_the_models_own_numbers():
    """A run saved with the aux weight and filter cap spelled out (0.3, 0) resumes under a
    config that leaves them to the model, which declares the same; another weight does not."""
    c = cfg.resolve("paper")
    assert cfg.resume_changes({"aux_weight": 0.3, "max_filter_rms": 0.0}, c, 0) == []
    with pytest.raises(cfg.ConfigError, match="aux_weight 0.5 -> 0.3"):
        cfg.resume_changes({"aux_weight": 0.5}, c, 0)


def test_run_writes_everything_and_resume_is_exact(tmp_path):
    full = fit(tiny(tmp_path / "a", plots=True, tensorboard=True))
    out = tmp_path / "a" / "run"
    for name in (
        "checkpoint.pt",
        "log.csv",
        "config.json",
        "model.safetensors",
        "model_polyak.safetensors",
        "model_polyak.json",
        "curves.png",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert len(full.history) == 3
    steps = (out / "steps.csv").read_text().splitlines()
    assert steps[0] == "step,epoch,loss,running_acc,lr,images_per_s"
    # 64 images in batches of 16: 4 steps an epoch, 12 in all, a row every 5th step
    assert [row.split(",")[:2] for row in steps[1:]] == [["5", "1.2500"], ["10", "2.5000"]]

    fit(tiny(tmp_path / "b", epochs=2))  # interrupted after two epochs ...
    resumed = fit(tiny(tmp_path / "b", epochs=3), resume=True)  # ... and resumed
    resumed_steps = (tmp_path / "b" / "run" / "steps.csv").read_text().splitlines()
    # the same rows but for images/s, a timing
    assert [r.rsplit(",", 1)[0] for r in resumed_steps] == [r.rsplit(",", 1)[0] for r in steps]
    for a, b in zip(full.history, resumed.history, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "polyak_test_loss", "lr"):
            assert getattr(a, key) == getattr(b, key), (key, a, b)
    model_a, card = load_weights(out / "model.safetensors")
    model_b, _ = load_weights(tmp_path / "b" / "run" / "model.safetensors")
    for (k, va), vb in zip(
        model_a.state_dict().items(), model_b.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert card.class_names == [str(i) for i in range(10)] or len(card.class_names) == 10


def test_googlenet_with_aux_heads_trains(tmp_path):
    """The demo's network: aux heads on at the smallest input their 5x5 pool takes."""
    result = fit(
        tiny(
            tmp_path,
            model="googlenet",
            input_size=80,
            epochs=1,
            limit_train=32,
            limit_test=16,
            lr=0.005,
        )
    )
    row = result.history[0]
    assert row.train_loss > row.train_main_loss > 0  # main + 0.3 x aux
    model, card = load_weights(tmp_path / "run" / "model_polyak.safetensors")
    assert model.aux1 is not None and card.preprocessing.crop == 80


def test_se_googlenet_trains_with_its_aux_heads(tmp_path):
    """SE-GoogLeNet is a GoogLeNet by its card (aux heads sized for the training input): fit
    builds it for 96 px and adds the aux heads' loss."""
    result = fit(
        tiny(
            tmp_path,
            model="se_googlenet",
            input_size=96,
            epochs=1,
            limit_train=16,
            limit_test=16,
            lr=0.005,
        )
    )
    row = result.history[0]
    assert row.train_loss > row.train_main_loss > 0  # main + 0.3 x aux
    model, card = load_weights(tmp_path / "run" / "model.safetensors")
    assert model.aux1 is not None and model.input_size == card.preprocessing.crop == 96


def test_resume_with_other_settings_is_refused(tmp_path):
    fit(tiny(tmp_path, epochs=1))
    with pytest.raises(Exception, match="batch_size"):
        fit(tiny(tmp_path, epochs=2, batch_size=8), resume=True)


def test_checkpoint_write_killed_midway_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    fit(tiny(tmp_path, epochs=1))
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    forward = TrainStep.forward
    calls = []

    def diverges(self, x, y):  # the third batch of epoch 2 blows up
        loss, main, logits = forward(self, x, y)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 3 else loss), main, logits

    monkeypatch.setattr(TrainStep, "forward", diverges)
    with pytest.raises(TrainingError, match="last good checkpoint"):
        fit(tiny(tmp_path, epochs=2), resume=True)
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert after["epoch"] == before["epoch"] == 1
    for k in before["model"]:
        assert torch.equal(before["model"][k], after["model"][k])


DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from safetensors.torch import save_file
    from goingdeeper.train import config as cfg
    from goingdeeper.train import fit
    torch.set_num_threads(1)
    c = cfg.from_dict(json.loads(sys.argv[1]))
    result = fit(c)
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
              os.path.join(c.out, f"rank{rank}.safetensors"))
""")


def test_distributed_two_cpu_processes_match_one(tmp_path):
    import json

    from safetensors.torch import load_file

    script = tmp_path / "run_fit.py"
    script.write_text(DDP_SCRIPT)
    base = {**TINY, "epochs": 2, "polyak": False, "recipe": "none", "flip": False, "batch_size": 16}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = {**base, "out": str(tmp_path / "one")}
    two = {**base, "out": str(tmp_path / "two")}
    r = subprocess.run(
        [sys.executable, str(script), json.dumps(one)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            str(script),
            json.dumps(two),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    single = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    rank0 = load_file(str(tmp_path / "two" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "two" / "rank1.safetensors"))
    for k in single:
        assert torch.equal(rank0[k], rank1[k]), k  # DDP keeps the replicas identical
        torch.testing.assert_close(rank0[k], single[k], atol=1e-5, rtol=1e-4)


def test_frozen_modules_keep_their_weights_and_the_rest_trains(tmp_path):
    """Fine-tuning with the first layers fixed: their weights end exactly as they began, the
    optimizer holds only the other parameters, and those move."""
    c = tiny(tmp_path, epochs=1, freeze=["C1", "S2"])
    start = fit(c.replace(epochs=0, out=str(tmp_path / "start"))).model.named_parameters()
    start = {k: v.detach().clone() for k, v in start}
    result = fit(c)
    for key, value in result.model.named_parameters():
        frozen = key.startswith(("C1.", "S2."))
        assert torch.equal(value, start[key]) == frozen, key
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    trainable = sum(1 for p in result.model.parameters() if p.requires_grad)
    params = sum(len(g["params"]) for g in state["optimizer"]["param_groups"])
    assert params == trainable < len(list(result.model.parameters()))


def test_freeze_names_an_unknown_module(tmp_path):
    with pytest.raises(cfg.ConfigError, match="freeze: no module named 'conv9'"):
        fit(tiny(tmp_path, freeze=["conv9"]))


STEM = ["conv1", "conv2_reduce", "conv2", "inception3a", "inception3b"]


def _googlenet_with_cache(max_bytes: int = 10**9):
    torch.manual_seed(0)
    model = create_model("googlenet", aux_logits=False, num_classes=10, input_size=48, dropout=0.0)
    freeze(model, STEM)
    step = TrainStep(model, frozen=STEM).train()
    conv1_batches: list[int] = []
    model.conv1.register_forward_hook(lambda m, args, out: conv1_batches.append(len(args[0])))
    return model, step, FrozenPrefixCache(model, STEM, max_bytes), conv1_batches


def test_frozen_prefix_runs_to_the_first_trained_module():
    model = create_model("googlenet", aux_logits=False, input_size=48)
    names = [name for name, _ in frozen_prefix(model, STEM)]
    assert names == ["conv1", "pool1", "lrn1", "conv2_reduce", "conv2", "lrn2", "pool2"] + [
        "inception3a",
        "inception3b",
        "pool3",
    ]
    with pytest.raises(CacheError, match=r"first module \(conv1\) is not frozen"):
        frozen_prefix(model, ["inception3a"])


def test_frozen_prefix_cache_computes_each_input_once_and_changes_nothing():
    """Repeated inputs skip the stem (it sees an empty batch), new ones (the mirrors) run it on
    their own; the logits and the loss equal the uncached model's at every step."""
    model, step, cache, conv1_batches = _googlenet_with_cache()
    x = torch.randn(4, 3, 48, 48)
    y = torch.tensor([0, 1, 2, 3])
    batches = [x, x, x.flip(3), torch.cat([x[:2], x.flip(3)[2:]])]
    cached = [step(b, y)[0] for b in batches]
    assert conv1_batches == [4, 4, 0, 4, 0, 0]  # check batch (lookup + model), hit, 4 misses
    assert (len(cache.entries), cache.hits, cache.misses) == (8, 8, 8)
    cache.close()
    conv1_batches.clear()
    plain = [step(b, y)[0] for b in batches]
    assert conv1_batches == [4, 4, 4, 4]
    for a, b in zip(cached, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_prefix_cache_stops_growing_at_its_limit_and_skips_evaluation():
    model, step, cache, conv1_batches = _googlenet_with_cache(max_bytes=2 * 480 * 3 * 3 * 4)
    x = torch.randn(4, 3, 48, 48)  # at 48x48 the pool3 output is 480 x 3 x 3
    step(x, torch.zeros(4, dtype=torch.long))
    logits = model(x)
    assert len(cache.entries) == 2 and cache.bytes == 2 * 480 * 3 * 3 * 4
    model.eval()
    with torch.no_grad():
        evaluated = model(x)
    assert cache.stats().cache_hit_rate == 0.25  # 2 of the 8 inputs trained on
    assert conv1_batches == [4, 4, 2, 0, 4]  # check batch, 2 misses, evaluation: everything
    cache.close()
    model.train()
    torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-6)
    assert evaluated.shape == (4, 10)


def test_frozen_prefix_cache_refuses_a_forward_that_is_not_a_chain_of_children():
    class Swapped(nn.Module):  # children listed in another order than forward runs them
        def __init__(self):
            super().__init__()
            self.second = nn.Conv2d(3, 3, 1)
            self.first = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.second(self.first(x)).mean((2, 3)))

    model = Swapped()
    freeze(model, ["second", "first"])
    cache = FrozenPrefixCache(model, ["second", "first"], 10**6)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(CacheError, match="one after the other does not give Swapped's output"):
        model(x)
    assert model(x).shape == (2, 2) and not cache.entries  # hooks removed


def test_cache_frozen_trains_exactly_as_without(tmp_path):
    """fit with cache_frozen_gb: the same losses and weights as without; the images and
    mirrors of the first epoch are looked up in the next ones."""
    c = tiny(
        tmp_path,
        model="googlenet",
        model_args={"aux_logits": False},
        input_size=48,
        freeze=STEM,
        limit_train=32,
        limit_test=16,
        lr=0.005,
    )
    plain = fit(c)
    cached = fit(c.replace(cache_frozen_gb=1.0, out=str(tmp_path / "cached")))
    for a, b in zip(plain.history, cached.history, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.test_acc == b.test_acc
    rates = [row.cache_hit_rate for row in cached.history]
    assert rates[0] == 0 and rates[1] > 0.25 and rates[2] > 0.5
    assert cached.history[-1].cache_entries <= 2 * 32
    # the same to float rounding: looked-up and recomputed stem outputs can differ in the last
    # bit (another batch, another kernel), and three epochs carry that to ~3e-5 of a weight's
    # scale in the deepest modules
    for (key, a), (_, b) in zip(
        plain.model.state_dict().items(), cached.model.state_dict().items(), strict=True
    ):
        scale = a.abs().max().clamp_min(1e-12) if a.is_floating_point() else 1
        assert (a - b).abs().max() <= 1e-4 * scale, key


def test_cache_frozen_settings_are_checked(tmp_path):
    with pytest.raises(cfg.ConfigError, match="cache_frozen_gb needs freeze"):
        cfg.validate(tiny(tmp_path, cache_frozen_gb=1.0))
    with pytest.raises(cfg.ConfigError, match="exclude each other"):
        cfg.validate(tiny(tmp_path, cache_frozen_gb=1.0, freeze=["C1"], max_filter_rms=0.1))
    # LeNet-5 squashes C1's maps between the modules: its forward is not a chain of them
    with pytest.raises(cfg.ConfigError, match="does not give LeNet5's output after S2"):
        fit(tiny(tmp_path, cache_frozen_gb=1.0, freeze=["C1", "S2"]))
    with pytest.raises(cfg.ConfigError, match="first module \\(C1\\) is not frozen"):
        fit(tiny(tmp_path, cache_frozen_gb=1.0, freeze=["C3"]))


def test_mnist_lenet5_preset_learns(tmp_path):
    """The preset's optimiser moves LeNet-5 as published (RBF outputs, scaled tanh) off chance:
    trained on the digits data for 3 epochs with it, the held-out fifth is mostly right."""
    c = cfg.resolve(
        "mnist-lenet5",
        data="digits",
        epochs=3,
        workers=0,
        progress=False,
        tensorboard=False,
        plots=False,
        eval_views=[],
        out=str(tmp_path / "run"),
    )
    history = fit(c).history
    assert history[-1].test_acc > 0.8, history[-1]
    assert history[-1].train_loss < history[0].train_loss


def _digit_tree(root, folders: dict[str, int], per_class: int = 6) -> None:
    from goingdeeper.data import digits

    source = digits("train")
    for split in ("train", "test"):
        for folder, digit in folders.items():
            (root / split / folder).mkdir(parents=True)
            picked = [i for i, t in enumerate(source.targets) if t == digit][:per_class]
            for i in picked:
                source.decode(i).save(root / split / folder / f"{i}.png")


def test_fine_tuning_keeps_the_weights_classes_found_by_name(tmp_path):
    from goingdeeper.train.build import build_data, input_preprocessing
    from goingdeeper.train.distributed import Distributed

    first = fit(tiny(tmp_path / "a", epochs=1))
    _digit_tree(tmp_path / "three_seven", {"7": 7, "3": 3})
    c = tiny(
        tmp_path / "b",
        epochs=1,
        data=str(tmp_path / "three_seven"),
        init_weights=first.paths.weights,
        limit_train=0,
        limit_test=0,
    )
    train_ds, test_ds, classes = build_data(c, input_preprocessing(c), Distributed())
    assert list(classes.names) == [str(d) for d in range(10)]
    assert set(train_ds.targets) == {3, 7} and set(test_ds.targets) == {3, 7}
    assert all(f"/{t}/" in src for src, t in train_ds.samples)  # each image keeps its class
    result = fit(c)
    _, card = load_weights(result.paths.weights)
    assert card.num_classes == 10 and card.class_names == [str(d) for d in range(10)]
    _digit_tree(tmp_path / "unknown", {"seven": 7})
    with pytest.raises(ConfigError, match="'seven' is not one of the 10 classes.*new_head=true"):
        fit(tiny(tmp_path / "c", data=str(tmp_path / "unknown"), init_weights=c.init_weights))


def test_wordnet_id_folders_give_the_weights_imagenet_names_and_ids(tmp_path):
    _digit_tree(tmp_path / "tree", {"n01440764": 0, "n02113186": 1})
    result = fit(tiny(tmp_path, epochs=1, data=str(tmp_path / "tree"), limit_train=0, limit_test=0))
    _, card = load_weights(result.paths.weights)
    assert card.class_names == ["tench", "Cardigan"]
    assert card.class_ids == ["n01440764", "n02113186"]
