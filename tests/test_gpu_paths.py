"""The paths a GPU run takes, checked on the CPU: the package without its deferred libraries,
a training step that reads nothing back from the device until asked."""

from __future__ import annotations

import sys

import pytest
import torch

from goingdeeper.data import digits
from goingdeeper.data.sources.shards import write_shards
from goingdeeper.errors import ConfigError, DataError, VisualizeError
from goingdeeper.microscope import grad_cam, integrated_gradients
from goingdeeper.models.lrn import local_response_norm
from goingdeeper.train import train_one_epoch
from goingdeeper.train.config import TrainConfig
from goingdeeper.train.distributed import Distributed
from goingdeeper.train.engine import NonFiniteLossError
from goingdeeper.train.fit import _check_runtime

CPU = torch.device("cpu")


def test_a_missing_webdataset_or_captum_is_one_line_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    monkeypatch.setitem(sys.modules, "captum", None)
    with pytest.raises(DataError, match=r"webdataset package; install it \(pip install"):
        write_shards({"train": digits("train")}, tmp_path / "out", 40_000)
    assert not (tmp_path / "out").exists()  # refused before the folder was made
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    x = torch.zeros(3, 8, 8)
    with pytest.raises(VisualizeError, match=r"captum package; install it"):
        grad_cam(net, x, "0", [0])
    with pytest.raises(VisualizeError, match=r"captum package; install it"):
        integrated_gradients(net, x, 0)


class _Diverging(torch.nn.Module):
    """A linear classifier whose loss is NaN from the `at`th call on."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.model, self.at, self.calls = torch.nn.Linear(4, 3), at, 0

    def forward(self, x, y):
        self.calls += 1
        logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if self.calls >= self.at:
            loss = loss * float("nan")
        return loss, loss.detach(), logits.detach()


def test_the_step_reads_its_figures_only_when_asked_and_a_nan_stops_the_epoch_later():
    """The running figures are read at the batches `read_at` names (here never) and at the end;
    a NaN loss at the third batch is raised then, naming the image it came at."""
    torch.manual_seed(0)
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(6)]
    step = _Diverging(at=99)
    opt = torch.optim.SGD(step.parameters(), lr=0.0)  # lr 0: every batch sees the same model
    reports = []
    stats = train_one_epoch(
        step, opt, batches, device=CPU, on_batch=reports.append, read_at=lambda b: b % 4 == 0
    )
    losses = [torch.nn.functional.cross_entropy(step.model(x), y).item() for x, y in batches]
    correct = sum((step.model(x).argmax(1) == y).sum().item() for x, y in batches)
    assert stats.loss == pytest.approx(sum(losses) / 6, rel=1e-6)  # float32 losses, summed
    assert stats.acc == correct / 30 and stats.images == 30
    assert [(r.batches, r.n) for r in reports] == [(4, 20)]
    assert reports[0].loss == pytest.approx(losses[3], rel=1e-6)  # the last batch's loss
    with pytest.raises(NonFiniteLossError, match=r"nan at image 10 \(noticed at image 30\)"):
        train_one_epoch(_Diverging(at=3), opt, batches, device=CPU, read_at=lambda b: False)


@pytest.mark.slow  # inductor compiles two kernels: seconds to a minute of C++
def test_the_fused_lrn_compiled_on_the_cpu_equals_the_reference():
    """The compiled LRN (the default on CUDA) forced on here, through torch.compile's CPU
    backend, against the eager path, forward and backward. Each output is a few dozen float32
    operations on values of order 1 in another order: within a few hundred float32 epsilons
    (1.2e-7) of each other."""
    torch.manual_seed(0)
    x = (torch.randn(2, 7, 5, 4) * 3).requires_grad_()
    g = torch.randn(2, 7, 5, 4)
    outs, grads = [], []
    for fused in (False, True):
        out = local_response_norm(x, 5, 1e-2, 0.75, 1.0, fused=fused)
        (grad,) = torch.autograd.grad(out, x, g)
        outs.append(out)
        grads.append(grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=3e-5, atol=3e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=3e-5, atol=3e-6)
    assert not torch.equal(outs[0], x)  # the normalisation did something
    reference = torch.nn.functional.local_response_norm(x, 5, 1e-2, 0.75, 1.0)
    torch.testing.assert_close(outs[1], reference, rtol=3e-5, atol=3e-6)


class _Step(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(4, 3)

    def forward(self, x, y):
        logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, loss.detach(), logits.detach()


@pytest.mark.parametrize("batch_size, compiles", [(4, 1), (0, 2)])
def test_a_compiled_step_compiles_once_when_batches_keep_one_shape(batch_size, compiles):
    """Batches of 4, 4, 3 (a short last batch) and 4, through a step compiled with a backend
    that counts the graphs dynamo hands it: with `batch_size` the short batch is dropped and
    one graph serves the epoch; without, the short batch compiles a second one."""
    graphs = []

    def counting(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    step = _Step()
    compiled = torch.compile(step, backend=counting, dynamic=False)
    sizes = (4, 4, 3, 4)
    batches = [(torch.randn(n, 4), torch.randint(0, 3, (n,))) for n in sizes]
    opt = torch.optim.SGD(step.parameters(), lr=0.1)
    stats = train_one_epoch(compiled, opt, batches, device=CPU, batch_size=batch_size)
    assert len(graphs) == compiles
    assert (stats.images, stats.dropped) == ((12, 3) if batch_size else (15, 0))
    torch._dynamo.reset()


def test_deterministic_on_cuda_is_refused_in_one_line_before_any_work():
    c = TrainConfig(deterministic=True)
    with pytest.raises(ConfigError, match=r"CPU only: on CUDA the adaptive average pool"):
        _check_runtime(c, torch.device("cuda"), Distributed())
    _check_runtime(TrainConfig(), torch.device("cuda"), Distributed())  # off: nothing to refuse
