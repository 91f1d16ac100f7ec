"""Reading state dicts and loading them into registered models, checked.

Every importer and our own format go through `load_checked`: one place that says, for any
weights and any model, which keys are missing, which are left over and which tensors have the
wrong shape, before a single tensor is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import WeightsError
from ..models.base import ImportedState
from ..registry import build_model, build_shell


def recognise_state(
    state: dict[str, Tensor],
    architectures: Sequence[Callable[[dict[str, Tensor]], ImportedState | None]],
    what: str,
) -> ImportedState:
    """The first of `architectures` (each a model file's reader of another project's keys) that
    recognises `state`, with the keys made ours; `what` names the accepted kinds in the error."""
    for architecture in architectures:
        found = architecture(state)
        if found is not None:
            return found
    keys = ", ".join(sorted(state)[:3]) or "none"
    raise WeightsError(f"not a {what} (first keys: {keys})")


def read_state_dict(source: str | Path | nn.Module | dict, what: str) -> tuple[dict, str]:
    """A state dict from a model, a state dict, a .safetensors file or a .pth file of one
    (loaded with weights_only: tensors and plain containers, never arbitrary objects); and
    where it came from. `what` names the expected weights in the error messages."""
    if isinstance(source, nn.Module):
        return source.state_dict(), f"{type(source).__name__} model"
    if isinstance(source, dict):
        return source, "state dict"
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; give a {what} .pth or .safetensors file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), str(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a state dict"
        raise WeightsError(f"{path}: not a PyTorch state dict ({e.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state, str(path)


def check_fit(
    expected: dict[str, Tensor], state: dict[str, Tensor], what: str, fresh: tuple[str, ...] = ()
) -> None:
    """A `WeightsError` unless `state` has every key of `expected` (but those starting with a
    `fresh` prefix, left to their initialisation), no other, each of the expected shape."""
    missing = [k for k in expected if k not in state and not k.startswith(fresh)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        missing, unexpected = sorted(missing)[:3], sorted(unexpected)[:3]
        raise WeightsError(f"does not fit {what}: missing {missing}, unexpected {unexpected}")
    for key, tensor in expected.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{key} has shape {tuple(state[key].shape)}, {what} expects {tuple(tensor.shape)}"
            )
        if key in state and state[key].is_floating_point() != tensor.is_floating_point():
            raise WeightsError(  # int8 weights are quantized: a cast would change every value
                f"{key} holds {state[key].dtype}, {what} expects {tensor.dtype}; quantized "
                "weights cannot be loaded as floats"
            )


def load_checked(
    name: str,
    kwargs: dict,
    state: dict[str, Tensor],
    *,
    fresh: tuple[str, ...] = (),
) -> nn.Module:
    """The registered model `name`, built with `kwargs`, holding the tensors of `state`, in
    eval mode; checked by `check_fit` first, on a model without storage. Keys under a `fresh`
    prefix may be absent: those parts keep their initialisation (fresh aux heads, say). The
    tensors are copied, so that the model shares no storage with their source, in PyTorch's
    own allocations and strides: a view of a file's bytes or odd strides on size-1 axes can
    send a convolution down another kernel, with other rounding."""
    what = f"{name} with {kwargs}" if kwargs else name
    shell = build_shell(name, **kwargs)
    check_fit(shell.state_dict(), state, what, fresh)
    complete = set(shell.state_dict()) == {n for n, _ in shell.named_parameters()} | {
        n for n, _ in shell.named_buffers()
    }
    copies = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    if complete and set(state) == set(shell.state_dict()):  # nothing to initialise: no init
        shell.load_state_dict(copies, assign=True)
        return shell.eval()
    model = build_model(name, **kwargs)  # built for real: what the state lacks is initialised
    model.load_state_dict(copies, strict=False)
    return model.eval()
