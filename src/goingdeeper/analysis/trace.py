"""The one forward tracer: which layers ran, in what order, with what shapes and multiply-adds,
and where each max pool took its max. The cost tables (`analysis.counts`, `analysis.summary`)
and the visualisations (`visualize`, `microscope`) read the same record.

MACs count the multiply-adds of convolutions and linear layers per image (Table 1's "ops"); a
custom layer reports its own through a `count_macs(out) -> int` method.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
arXiv:1311.2901, section 2.1: the deconvnet needs the *switches* of every max pool, "the
locations of the maxima within each pooling region", recorded during the forward pass.

The model is never modified: forward hooks record every leaf module that runs (so the order is
the order of execution, whatever `forward` looks like) and, for each `MaxPool2d`, the argmax of
every window. Every module runs as its own (`models.base.unfused`), so each is seen. The record
is enough to invert the network where it is a chain: each module reads the tensor the module
before it returned, except inside a *concat* module (GoogLeNet's `Inception`), whose branches
all read the module's input and are concatenated on channels in the order they ran. The hooks
check this as the model runs (`Step.chained`): a residual addition (ResNet, Xception) or any
other operation outside modules breaks the chain, and projecting across such a break is refused
rather than silently wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UnknownLayerError
from ..models.base import max_pool_with_indices, unfused

# Modules that only hold other modules: their children are the layers a person names.
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def concatenates_branches(module: nn.Module) -> bool:
    """Whether a module says its children are branches that read its input and are
    concatenated on channels in the order they ran (an Inception module, paper Fig. 2b)."""
    return bool(getattr(module, "concatenates_branches", False))


@dataclass
class Step:
    """One call of a leaf module, with the shapes it saw (batch first) and its cost."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int = 0  # multiply-adds per image
    input_needs_grad: bool = False  # whether its input needed a gradient (`record(grad=True)`)
    switches: Tensor | None = None  # MaxPool2d: each window's argmax, flat over the input H*W
    chained: bool = True  # it read the output of the step before it (or the model's input)


def step_macs(module: nn.Module, out: Tensor) -> int:
    """Multiply-adds of one call of a leaf module, per image."""
    if hasattr(module, "count_macs"):
        return int(module.count_macs(out))
    if isinstance(module, nn.Conv2d):
        per_output = (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        )
        return out[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


@dataclass
class Concat:
    """One call of a concat module: its branches, each the steps that ran inside it."""

    name: str
    branch_names: list[str] = field(default_factory=list)
    branches: list[list[Step]] = field(default_factory=list)
    out_channels: int | None = None  # of the module's output (the concatenation)

    @property
    def widths(self) -> list[int]:
        """Output channels of each branch, in concatenation order."""
        return [branch[-1].out_shape[1] for branch in self.branches]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.branches[0][0].in_shape


Item = Step | Concat


@dataclass
class Trace:
    """What one forward pass did (batch of N), enough to project back to pixels."""

    items: list[Item]  # leaves outside concat modules, and concat modules, in execution order
    steps: list[Step]  # every leaf that ran, in execution order
    input_shape: tuple[int, ...]
    shapes: dict[str, tuple[int, ...]]  # every module that returned a tensor -> its shape
    layers: list[str]  # the layer names a person uses (conv1 ... inception5b), 4-D outputs
    outputs: dict[str, Tensor] = field(default_factory=dict)  # the layers asked to be kept


class _Stop(Exception):
    """Raised from a hook once everything asked for is recorded: the rest need not run."""


@contextmanager
def evaluating(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Eval mode for the duration (dropout off, BatchNorm on running statistics), every module
    unfused (`models.base.unfused`: each layer runs as its own module, for the hooks that
    watch it), then each module's mode as it was. With `train`, training mode but BatchNorm
    (so that training-only heads run, and no statistics move)."""
    was_training = {m: m.training for m in model.modules()}
    model.train(train)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
    try:
        with unfused(model):
            yield model
    finally:
        for m, mode in was_training.items():
            m.training = mode


def layer_names(model: nn.Module) -> list[str]:
    """The model's layers as people name them: its children, looking through plain containers
    (`features.0` in a Sequential stack; `conv1`, `inception3a` in GoogLeNet)."""
    names: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if isinstance(child, CONTAINERS):
                walk(child, f"{prefix}{name}.")
            else:
                names.append(f"{prefix}{name}")

    walk(model, "")
    return names


def _concat_owner(name: str, concat_names: list[str]) -> str | None:
    for owner in concat_names:
        if name.startswith(owner + "."):
            return owner
    return None


def group_steps(steps: Iterable[Step], concat_names: list[str]) -> list[Item]:
    """Fold the steps that ran inside a concat module into one `Concat` item per call."""
    items: list[Item] = []
    for step in steps:
        owner = _concat_owner(step.name, concat_names)
        if owner is None:
            items.append(step)
            continue
        branch = step.name[len(owner) + 1 :].split(".")[0]
        last = items[-1] if items else None
        if not (isinstance(last, Concat) and last.name == owner):
            last = Concat(owner)
            items.append(last)
        if branch not in last.branch_names:
            last.branch_names.append(branch)
            last.branches.append([])
        last.branches[last.branch_names.index(branch)].append(step)
    return items


def unknown_layer(layer: str, known: list[str]) -> UnknownLayerError:
    return UnknownLayerError(
        f"unknown layer {layer!r}; the layers of this model are: {', '.join(known)}"
    )


class _Chain:
    """Follows the tensor that flows from module to module, to tell a chain from a graph."""

    def __init__(self, x: Tensor, concat_names: list[str]) -> None:
        self.top: Tensor | None = x  # the output of the last top-level module (or the input)
        self.concat_names = concat_names
        self.concat_input: Tensor | None = None
        self.branch: tuple[str, str] | None = None  # (concat module, branch) running now
        self.branch_last: Tensor | None = None

    def follows(self, name: str, inp: Tensor, out: Tensor) -> bool:
        """Whether the leaf `name` read what the chain says it should; then advance."""
        owner = _concat_owner(name, self.concat_names)
        if owner is None:
            ok, self.top = inp is self.top, out
            return ok
        branch = (owner, name[len(owner) + 1 :].split(".")[0])
        if branch != self.branch:  # a branch starts: it reads the module's input
            if self.branch is None or self.branch[0] != owner:
                self.concat_input = self.top
            self.branch = branch
            ok = inp is self.concat_input
        else:
            ok = inp is self.branch_last
        self.branch_last = out
        return ok

    def concat_done(self, out: Tensor) -> None:
        self.top, self.branch, self.branch_last = out, None, None


class _Recorder:
    """The hooks of `record`: every leaf's step (with a max pool's switches), every module's
    output shape, the outputs asked for; stops the pass once those are all in."""

    def __init__(self, model: nn.Module, x: Tensor, keep: list[str]):
        self.modules = dict(model.named_modules())
        self.concat_names = [n for n, m in self.modules.items() if concatenates_branches(m)]
        self.keep = keep
        self.steps: list[Step] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.outputs: dict[str, Tensor] = {}
        missing = [name for name in keep if name not in self.modules or name == ""]
        self.wanted = set(keep) if not missing else set()
        self.chain = _Chain(x, self.concat_names)

    def leaf_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out) -> None:
            inp = inputs[0]
            tensor = out[0] if isinstance(out, tuple) else out
            macs = step_macs(module, tensor)
            step = Step(
                name, module, tuple(inp.shape), tuple(tensor.shape), macs, inp.requires_grad
            )
            if isinstance(module, nn.MaxPool2d):
                step.switches = (
                    out[1] if isinstance(out, tuple) else max_pool_with_indices(module, inp)[1]
                )
            step.chained = self.chain.follows(name, inp, tensor)
            self.steps.append(step)

        return hook

    def any_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, out) -> None:
            if not isinstance(out, Tensor):
                return
            self.shapes[name] = tuple(out.shape)
            if name in self.concat_names:
                self.chain.concat_done(out)
            if name in self.keep:
                self.outputs[name] = out.detach().clone()  # a later in-place ReLU must not
            if self.wanted and self.wanted <= self.outputs.keys():  # change it
                raise _Stop

        return hook

    def attach(self) -> list:
        handles = []
        for name, module in self.modules.items():
            if name and not any(True for _ in module.children()):
                handles.append(module.register_forward_hook(self.leaf_hook(name)))
            if name:
                handles.append(module.register_forward_hook(self.any_hook(name)))
        return handles


def record(
    model: nn.Module,
    x: Tensor,
    *,
    keep: Iterable[str] = (),
    train: bool = False,
    grad: bool = False,
) -> Trace:
    """Run `model(x)` in eval mode without gradients and record its steps and pool switches.

    `keep`: layer (module) names whose outputs to keep in `Trace.outputs`; the forward pass
    stops as soon as they are all recorded (nothing later is needed).
    `train`: in training mode instead, BatchNorm excepted (`evaluating`), so that training-only
    heads run too. `grad`: with autograd on, so that each step says whether its input needed a
    gradient.
    """
    keep = list(dict.fromkeys(keep))
    recorder = _Recorder(model, x, keep)
    handles = recorder.attach()
    try:
        with evaluating(model, train=train), torch.set_grad_enabled(grad):
            model(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    shapes = recorder.shapes
    people = [n for n in layer_names(model) if len(shapes.get(n, ())) == 4]
    for name in keep:
        if name not in shapes:
            raise unknown_layer(name, people)
    items = group_steps(recorder.steps, recorder.concat_names)
    for item in items:
        if isinstance(item, Concat) and item.name in shapes:
            item.out_channels = shapes[item.name][1]
    return Trace(
        items=items,
        steps=recorder.steps,
        input_shape=tuple(x.shape),
        shapes=shapes,
        layers=people,
        outputs=recorder.outputs,
    )
