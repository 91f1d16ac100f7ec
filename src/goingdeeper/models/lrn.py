"""Local response normalisation across channels (AlexNet section 3.3), computed fast.

    b_c = a_c / (k + alpha / n * sum of a_j^2 over the n maps j centred on c) ** beta

The same function and parameters as `nn.LocalResponseNorm` (PyTorch's alpha is divided by
the window size n, as Caffe's is), and a drop-in subclass of it. PyTorch computes the window
sum with a 3-d average pool over a padded copy, which on the CPU costs about as much as the
convolution next to it; here the window sum is n - 1 additions of shifted channel slices,
beta = 0.75 is rsqrt(d) * sqrt(rsqrt(d)), and the gradient is written out:

    dL/da_c = g_c * d_c^-beta - 2 alpha beta / n * a_c * sum over the window of g_j b_j / d_j

with d the bracket above and g = dL/db. Outputs agree with PyTorch's to float rounding; the
speed against it is measured by `python benchmarks/lrn.py`. ONNX export keeps PyTorch's
formulation.

Fused (`fused=True`, the default on CUDA): the same arithmetic, forward and backward each
compiled by `torch.compile` into a kernel or two that read the input once, compute d in
float32 in registers and save only the input for the backward (which recomputes d). In eager
mode each of the n - 1 additions, the powers and the products is a pass over memory: about 13
passes forward and 16 backward at n = 5.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# d is computed in float32 for these: fp16's squares overflow past |a| = 256, and bf16's 8-bit
# sums leave errors of a few percent in the output; the output itself keeps the input's type
_LOW = (torch.float16, torch.bfloat16)


def window_sum(x: Tensor, size: int, *, transpose: bool = False) -> Tensor:
    """Sum over channels c - size//2 .. c + (size-1)//2 (zeros outside), for every c.

    `transpose` gives the adjoint window (c - (size-1)//2 .. c + size//2), the one the
    gradient needs; the two are the same for odd sizes.
    """
    before, after = size // 2, (size - 1) // 2
    if transpose:
        before, after = after, before
    channels = x.shape[1]
    padded = F.pad(x, (0, 0, 0, 0, before, after))
    total = padded[:, 0:channels]
    for shift in range(1, size):
        total = total + padded[:, shift : shift + channels]
    return total


def _inverse_power(d: Tensor, beta: float) -> Tensor:
    """d ** -beta; beta = 0.75 (every published LRN) without pow's exp and log."""
    if beta == 0.75:
        r = d.rsqrt()
        return r * r.sqrt()
    return d.pow(-beta)


def _bracket(x: Tensor, size: int, alpha: float, k: float) -> Tensor:
    """d = k + alpha / n * (window sum of x^2), the quantity raised to -beta."""
    return window_sum(x * x, size).mul_(alpha / size).add_(k)


class _LRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        d = _bracket(x.float() if x.dtype in _LOW else x, size, alpha, k)
        scale = _inverse_power(d, beta).to(x.dtype)
        out = x * scale
        ctx.save_for_backward(x, d, scale)
        ctx.params = (size, alpha, beta)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, d, scale = ctx.saved_tensors
        size, alpha, beta = ctx.params
        dtype = grad.dtype
        if d.dtype != x.dtype:  # fp16: a loss-scaled g times a would overflow it
            grad, x, scale = grad.float(), x.float(), scale.float()
        # g_j b_j / d_j = g_j a_j d_j^-beta / d_j
        inner = window_sum(grad * x * scale / d, size, transpose=True)
        grad_x = grad * scale - (2.0 * alpha * beta / size) * x * inner
        return grad_x.to(dtype), None, None, None, None


def _fused_forward(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    xf = x.float()
    return (xf * _inverse_power(_bracket(xf, size, alpha, k), beta)).to(x.dtype)


def _fused_backward(
    grad: Tensor, x: Tensor, size: int, alpha: float, beta: float, k: float
) -> Tensor:
    g, xf = grad.float(), x.float()
    d = _bracket(xf, size, alpha, k)
    scale = _inverse_power(d, beta)
    inner = window_sum(g * xf * scale / d, size, transpose=True)
    return (g * scale - (2.0 * alpha * beta / size) * xf * inner).to(grad.dtype)


@functools.cache
def _compiled(fn):
    """`fn` compiled once per process, when a fused LRN first runs (not at import)."""
    return torch.compile(fn, dynamic=False)


class _FusedLRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.params = (size, alpha, beta, k)
        return _compiled(_fused_forward)(x, size, alpha, beta, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return _compiled(_fused_backward)(grad, x, *ctx.params), None, None, None, None


def local_response_norm(
    x: Tensor,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    *,
    fused: bool | None = None,
) -> Tensor:
    """`F.local_response_norm` for N x C x H x W inputs, computed as this module says;
    `fused`: compiled (None: on CUDA)."""
    if x.dim() != 4 or torch.onnx.is_in_onnx_export():
        return F.local_response_norm(x, size, alpha, beta, k)
    if x.is_cuda if fused is None else fused:
        return _FusedLRN.apply(x, size, alpha, beta, k)
    if torch.is_grad_enabled() and x.requires_grad:
        return _LRN.apply(x, size, alpha, beta, k)
    if x.dtype in _LOW:
        return x * _inverse_power(_bracket(x.float(), size, alpha, k), beta).to(x.dtype)
    return x * _inverse_power(_bracket(x, size, alpha, k), beta)


class LocalResponseNorm(nn.LocalResponseNorm):
    """`nn.LocalResponseNorm` (same arguments, same state, `isinstance` holds), faster.
    `fused`: the compiled kernels (None, the default: on CUDA; True or False: always, never)."""

    fused: bool | None = None

    def forward(self, x: Tensor) -> Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, fused=self.fused)
