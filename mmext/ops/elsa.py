"""The ELSA filter: per-head dynamic 7x7 filters plus a static ghost matrix.

For an input ``v`` of shape ``(B, C, H, W)`` whose ``C`` channels are split
into ``G`` heads of ``C // G`` channels, attention maps ``attn`` of shape
``(B, G * K * K, H, W)`` (head-major, each head's ``K * K`` taps in row-major
``(dy, dx)`` order) and per-channel static matrices ``ghost_mul`` /
``ghost_add`` of shape ``(C, K, K)``, the filter computes::

    out[b, c, y, x] = sum_{i, j} v[b, c, y + (i - r) * d, x + (j - r) * d]
                      * (ghost_mul[c, i, j] * attn[b, k(c, i, j), y, x]
                         + ghost_add[c, i, j])

    k(c, i, j) = g(c) * K * K + i * K + j

with ``r = K // 2``, dilation ``d``, ``g(c) = c // (C // G)`` and ``v`` read as
zero outside the image (no renormalisation of the attention at borders).
``ghost_mul=None`` means all ones (ELSA's ``lambda = 0``), ``ghost_add=None``
means all zeros.

Two implementations are chosen automatically (``impl='auto'``) or by name:

``'carafe'``
    CUDA only. The attention term is mmcv's CARAFE (scale 1) with heads
    folded into the batch (group size 1, ``K * K`` mask channels, which keeps
    the kernel's fixed per-block mask buffer within bounds); the static term
    is a bias-free depthwise convolution. Requires ``ghost_mul=None`` and
    ``dilation=1``.
``'pytorch'``
    Any device. A shift-and-accumulate loop over the ``K * K`` taps with a
    hand-written backward; memory stays within a small multiple of ``v``
    (no ``K * K``-fold unfold buffer). Supports ``ghost_mul`` and dilation.

:func:`elsa_filter_unfold` is the unfold formulation used by the official
code's fallback; it needs ``K * K`` times the memory of ``v`` and is kept only
as a reference for tests and benchmarks.
"""
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from mmext.utils.complexity import record_macs
from mmext.utils.precision import compute_dtype, full_precision

__all__ = [
    'elsa_filter', 'elsa_filter_unfold', 'carafe_available', 'ELSA_IMPLS'
]

ELSA_IMPLS = ('auto', 'carafe', 'pytorch')

_BUILD_HINT = ('install an mmcv build with the compiled CUDA ops (mmcv '
               '2.x built with MMCV_WITH_OPS=1 and FORCE_CUDA=1, or a '
               'prebuilt CUDA wheel)')


@lru_cache(maxsize=None)
def _load_carafe():
    """``(mmcv's carafe function, None)`` or ``(None, reason)``."""
    try:
        from mmcv.ops import carafe, get_compiling_cuda_version
    except Exception as err:  # ImportError, or the compiled _ext failing
        return None, (f'mmcv.ops.carafe could not be imported ({err}); '
                      f'{_BUILD_HINT}')
    if get_compiling_cuda_version() == 'not available':
        return None, f'mmcv was compiled without CUDA; {_BUILD_HINT}'
    return carafe, None


def carafe_available(device=None) -> Tuple[bool, str]:
    """Whether the ``'carafe'`` path can run (on ``device`` if given).

    Returns ``(ok, reason)``; ``reason`` says why not when ``ok`` is False.
    """
    if not torch.cuda.is_available():
        return False, ('CUDA is not available (mmcv\'s CARAFE has no CPU '
                       'kernel)')
    if device is not None and torch.device(device).type != 'cuda':
        return False, (f'the tensors are on {torch.device(device)}, and '
                       'mmcv\'s CARAFE has no kernel for that device')
    fn, reason = _load_carafe()
    if fn is None:
        return False, reason
    return True, ''


# --------------------------------------------------------------------------
# argument checking
# --------------------------------------------------------------------------
def _check_inputs(v: Tensor, attn: Tensor, ghost_add: Optional[Tensor],
                  ghost_mul: Optional[Tensor], kernel_size: int,
                  dilation: int) -> Tuple[int, int]:
    """Validate shapes; return ``(num_heads, K * K)``."""
    if not isinstance(kernel_size, int) or kernel_size < 1 \
            or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be a positive odd int, got '
                         f'{kernel_size!r}')
    if not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f'dilation must be a positive int, got {dilation!r}')
    if not torch.is_tensor(v) or v.dim() != 4:
        got = tuple(v.shape) if torch.is_tensor(v) else type(v)
        raise ValueError(f'v must be a 4-D tensor (B, C, H, W), got {got}')
    if not torch.is_tensor(attn) or attn.dim() != 4:
        raise ValueError(
            'attn must be a 4-D tensor (B, num_heads * K * K, H, W), got '
            f'{tuple(attn.shape) if torch.is_tensor(attn) else type(attn)}')
    if not v.is_floating_point() or not attn.is_floating_point():
        raise TypeError(f'v and attn must be floating point, got {v.dtype} '
                        f'and {attn.dtype}')
    B, C, H, W = v.shape
    kk = kernel_size * kernel_size
    if attn.shape[0] != B or attn.shape[2:] != v.shape[2:]:
        raise ValueError(
            f'attn {tuple(attn.shape)} must share batch and spatial size with '
            f'v {tuple(v.shape)}: expected ({B}, num_heads * {kk}, {H}, {W})')
    if attn.shape[1] % kk != 0 or attn.shape[1] == 0:
        raise ValueError(
            f'attn has {attn.shape[1]} channels, which is not a multiple of '
            f'kernel_size ** 2 = {kk}; it must hold num_heads * {kk} maps '
            '(head-major). Check kernel_size.')
    heads = attn.shape[1] // kk
    if C % heads != 0:
        raise ValueError(f'v has {C} channels, which cannot be split into '
                         f'{heads} heads (from attn\'s {attn.shape[1]} '
                         f'channels / {kk}); C must be divisible by heads')
    for name, g in (('ghost_add', ghost_add), ('ghost_mul', ghost_mul)):
        if g is None:
            continue
        if not torch.is_tensor(g):
            raise TypeError(f'{name} must be a tensor or None, got {type(g)}')
        if g.shape[-3:] != (C, kernel_size, kernel_size) or \
                g.numel() != C * kk:
            raise ValueError(
                f'{name} must have shape ({C}, {kernel_size}, {kernel_size}) '
                f'(one {kernel_size}x{kernel_size} matrix per channel of v), '
                f'got {tuple(g.shape)}')
        if g.device != v.device:
            raise ValueError(f'{name} is on {g.device} but v is on '
                             f'{v.device}; move them to the same device')
    if attn.device != v.device:
        raise ValueError(f'attn is on {attn.device} but v is on {v.device}; '
                         'move them to the same device')
    return heads, kk


def _tap_windows(k: int, kernel_size: int, dilation: int, H: int, W: int,
                 y0: int = 0, y1: Optional[int] = None):
    """Offsets of tap ``k`` and the output / input windows it touches, for
    output rows ``[y0, y1)``.

    Returns ``None`` when the tap reads nothing inside the image, else
    ``(out_y, out_x, in_y, in_x)`` as slices.
    """
    r = kernel_size // 2
    dy = (k // kernel_size - r) * dilation
    dx = (k % kernel_size - r) * dilation
    y1 = H if y1 is None else min(H, y1)
    oy0, oy1 = max(y0, -dy), min(y1, H - dy)
    ox0, ox1 = max(0, -dx), min(W, W - dx)
    if oy0 >= oy1 or ox0 >= ox1:
        return None
    return (slice(oy0, oy1), slice(ox0, ox1), slice(oy0 + dy, oy1 + dy),
            slice(ox0 + dx, ox1 + dx))


# Output rows are processed in bands of about this many elements so that the
# band being accumulated stays in cache across the K*K taps.
_BAND_ELEMENTS = 3 << 18


def _bands(shape) -> range:
    B, G, Cg, H, W = shape
    rows = max(1, _BAND_ELEMENTS // max(1, B * G * Cg * W))
    return range(0, H, rows), rows


def _taps(shape, num_taps, kernel_size, dilation):
    """Yield ``(k, out_y, out_x, in_y, in_x)`` band by band."""
    H, W = shape[-2:]
    starts, rows = _bands(shape)
    for y0 in starts:
        for k in range(num_taps):
            win = _tap_windows(k, kernel_size, dilation, H, W, y0, y0 + rows)
            if win is not None:
                yield (k, ) + win


# --------------------------------------------------------------------------
# pure-PyTorch path: shift and accumulate
# --------------------------------------------------------------------------
def _depthwise(x: Tensor, weight: Tensor, kernel_size: int,
               dilation: int) -> Tensor:
    """Bias-free depthwise ``KxK`` convolution (zero padding, same size)."""
    return F.conv2d(
        x,
        weight.reshape(x.shape[1], 1, kernel_size, kernel_size).to(x.dtype),
        None,
        padding=(kernel_size // 2) * dilation,
        dilation=dilation,
        groups=x.shape[1])


def shift_accumulate(v: Tensor, attn: Tensor, mul: Optional[Tensor],
                     add: Optional[Tensor], kernel_size: int,
                     dilation: int) -> Tensor:
    """The whole filter on ``v`` viewed as ``(B, G, Cg, H, W)``.

    ``attn`` is ``(B, G, K*K, H, W)``; ``mul`` / ``add`` are ``(G, Cg, K*K)``
    or None. The attention term reads, tap by tap, a shifted window of ``v``
    in place and accumulates into the output band by band; the static term
    is a depthwise convolution (its transpose in the backward). Besides the
    inputs, the forward holds the output and the backward the gradients plus
    one temporary of the size of a band of rows.
    """
    B, G, Cg, H, W = v.shape
    if add is None:
        out = torch.zeros_like(v)
    else:  # the static term first, then accumulate into it
        out = _depthwise(v.view(B, G * Cg, H, W), add, kernel_size,
                         dilation).view_as(v).contiguous()
    for k, oy, ox, iy, ix in _taps(v.shape, attn.shape[2], kernel_size,
                                   dilation):
        a = attn[:, :, k:k + 1, oy, ox]
        if mul is not None:
            a = a * mul[None, :, :, k, None, None]
        out[..., oy, ox].addcmul_(v[..., iy, ix], a)
    return out


def shift_accumulate_backward(grad_out: Tensor, v: Tensor, attn: Tensor,
                              mul: Optional[Tensor], add: Optional[Tensor],
                              ks: int, dil: int, needs) -> Tuple:
    """Gradients of :func:`shift_accumulate` with respect to ``v, attn,
    mul, add`` (None where ``needs`` says no, or the input is None), in
    the forward's dtype even if called under autocast."""
    with full_precision(grad_out.device.type):
        return _shift_accumulate_backward(grad_out, v, attn, mul, add, ks,
                                          dil, needs)


def _shift_accumulate_backward(grad_out, v, attn, mul, add, ks, dil, needs):
    need_v, need_a, need_m, need_add = needs
    grad_out = grad_out.contiguous()
    B, G, Cg, H, W = v.shape
    grad_v = None
    if need_v:
        if add is not None:  # transpose of the depthwise conv
            grad_v = _depthwise(
                grad_out.view(B, G * Cg, H, W),
                add.reshape(G * Cg, ks, ks).flip(-2, -1), ks,
                dil).view_as(v)
        else:
            grad_v = torch.zeros_like(v)
    grad_a = torch.zeros_like(attn) if need_a else None
    grad_m = torch.zeros_like(mul) if (need_m and mul is not None) \
        else None
    grad_add = torch.zeros_like(add) if (need_add and add is not None) \
        else None
    need_prod = need_a or grad_m is not None or grad_add is not None
    record_macs('elsa_filter', v.numel() * attn.shape[2] *
                (int(need_v) + int(need_prod)))
    buf = None
    for k, oy, ox, iy, ix in _taps(v.shape, attn.shape[2], ks, dil):
        go = grad_out[..., oy, ox]
        a = attn[:, :, k:k + 1, oy, ox]
        mk = None if mul is None else mul[None, :, :, k, None, None]
        if need_v:
            grad_v[..., iy, ix].addcmul_(go, a if mk is None else a * mk)
        if not need_prod:
            continue
        # go * shifted v, in a reused band-sized buffer
        if buf is None or buf.numel() < go.numel():
            buf = go.new_empty(go.numel())
        prod = torch.mul(
            go, v[..., iy, ix], out=buf[:go.numel()].view(go.shape))
        if grad_add is not None:
            grad_add[:, :, k] += prod.sum((0, 3, 4))
        if grad_m is not None:
            grad_m[:, :, k] += (prod * a).sum((0, 3, 4))
        if need_a:
            if mk is not None:
                prod.mul_(mk)
            grad_a[:, :, k, oy, ox] = prod.sum(2)
    return grad_v, grad_a, grad_m, grad_add


class _ShiftAccumulate(Function):
    """:func:`shift_accumulate` with its hand-written backward (eager mode;
    ``torch.compile`` sees the same code as the opaque custom op of
    :mod:`mmext.ops.elsa_custom_op`)."""

    @staticmethod
    def forward(ctx, v, attn, mul, add, kernel_size, dilation):
        ctx.kernel_size = kernel_size
        ctx.dilation = dilation
        ctx.save_for_backward(v, attn, mul, add)
        return shift_accumulate(v, attn, mul, add, kernel_size, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grads = shift_accumulate_backward(grad_out, *ctx.saved_tensors,
                                          ctx.kernel_size, ctx.dilation,
                                          ctx.needs_input_grad[:4])
        return grads + (None, None)


def _filter_pytorch(v, attn, ghost_add, ghost_mul, heads, kernel_size,
                    dilation):
    B, C, H, W = v.shape
    kk = kernel_size**2
    v5 = v.contiguous().view(B, heads, C // heads, H, W)
    a5 = attn.contiguous().view(B, heads, kk, H, W)
    mul = add = None
    if ghost_mul is not None:
        mul = ghost_mul.reshape(heads, C // heads, kk).to(v.dtype)
    if ghost_add is not None:
        add = ghost_add.reshape(heads, C // heads, kk).to(v.dtype)
    # the compiler cannot trace the tap loop for any size: it sees an
    # opaque op (registered in mmext.ops.elsa_custom_op) running this code
    apply = torch.ops.mmext.elsa_shift_accumulate \
        if torch.compiler.is_compiling() else _ShiftAccumulate.apply
    out = apply(v5, a5, mul, add, kernel_size, dilation)
    return out.view(B, C, H, W)


def _filter_traceable(v, attn, ghost_add, ghost_mul, heads, kernel_size,
                      dilation):
    """The filter as plain tensor ops for ``torch.export`` (ONNX): ``v``
    zero-padded once, then one shifted slice per tap. The eager path clips
    each tap's window with Python arithmetic on the map size, which a
    traced graph would keep for the example's size only."""
    B, C, H, W = v.shape
    kk = kernel_size**2
    r = (kernel_size // 2) * dilation
    padded = F.pad(v, (r, r, r, r)).view(B, heads, C // heads, H + 2 * r,
                                         W + 2 * r)
    a = attn.view(B, heads, kk, H, W)
    if ghost_mul is not None:
        mul = ghost_mul.reshape(heads, C // heads, kk).to(v.dtype)
    if ghost_add is None:
        out = v.new_zeros(B, heads, C // heads, H, W)
    else:
        out = _depthwise(v, ghost_add, kernel_size,
                         dilation).view(B, heads, C // heads, H, W)
    for k in range(kk):
        dy, dx = (k // kernel_size) * dilation, (k % kernel_size) * dilation
        tap = a[:, :, k:k + 1]
        if ghost_mul is not None:
            tap = tap * mul[None, :, :, k, None, None]
        out = out + padded[..., dy:dy + H, dx:dx + W] * tap
    return out.view(B, C, H, W)


def _attn_term_carafe(v, attn, heads, kernel_size):
    carafe, reason = _load_carafe()
    if carafe is None:
        raise RuntimeError(f"impl='carafe' is unavailable: {reason}. Use "
                           "impl='pytorch' (or 'auto').")
    B, C, H, W = v.shape
    # Heads go into the batch: one group of K*K masks per sample, so the
    # kernel's shared mask buffer (32 pixels x mask channels) stays small.
    feats = v.reshape(B * heads, C // heads, H, W).contiguous()
    masks = attn.reshape(B * heads, kernel_size**2, H, W).contiguous()
    out = carafe(feats, masks, kernel_size, 1, 1)
    return out.reshape(B, C, H, W)


def _resolve_impl(impl: str, v: Tensor, ghost_mul, dilation) -> str:
    if impl not in ELSA_IMPLS:
        raise ValueError(f'impl must be one of {ELSA_IMPLS}, got {impl!r}')
    if impl == 'pytorch':
        return impl
    if impl == 'carafe':
        ok, reason = carafe_available(v.device)
        if not ok:
            raise RuntimeError(
                f"impl='carafe' was requested but cannot run: {reason}. "
                "Use impl='pytorch' (works on every device) or impl='auto'.")
        if ghost_mul is not None:
            raise ValueError(
                "impl='carafe' handles only ghost_mul=None (ELSA's "
                "lambda = 0); per-channel multiplicative ghost matrices need "
                "impl='pytorch' (or 'auto', which picks it).")
        if dilation != 1:
            raise ValueError(
                f"impl='carafe' handles only dilation=1, got {dilation}; use "
                "impl='pytorch' (or 'auto', which picks it).")
        return impl
    # auto
    if v.is_cuda and ghost_mul is None and dilation == 1 \
            and carafe_available(v.device)[0]:
        return 'carafe'
    return 'pytorch'


def elsa_filter(v: Tensor,
                attn: Tensor,
                ghost_add: Optional[Tensor] = None,
                ghost_mul: Optional[Tensor] = None,
                kernel_size: int = 7,
                dilation: int = 1,
                impl: str = 'auto') -> Tensor:
    """Apply ELSA's filter (see the module docstring for the formula).

    Args:
        v (Tensor): values, ``(B, C, H, W)``.
        attn (Tensor): attention maps, ``(B, G * K * K, H, W)``, head-major;
            usually softmax-normalised over each head's ``K * K`` taps.
        ghost_add (Tensor, optional): additive ghost matrices ``(C, K, K)``.
        ghost_mul (Tensor, optional): multiplicative ghost matrices
            ``(C, K, K)``; None means all ones.
        kernel_size (int): ``K``, odd. Default 7.
        dilation (int): tap spacing. Default 1.
        impl (str): ``'auto'`` (CARAFE on CUDA when it applies, else the
            PyTorch path), ``'carafe'`` or ``'pytorch'``.

    Returns:
        Tensor: ``(B, C, H, W)``, differentiable w.r.t. every tensor input.
    """
    heads, _ = _check_inputs(v, attn, ghost_add, ghost_mul, kernel_size,
                             dilation)
    path = _resolve_impl(impl, v, ghost_mul, dilation)
    # the attention term is computed outside the dispatcher on both paths
    # (the ghost term is a depthwise conv, which a MAC count sees)
    record_macs('elsa_filter', v.numel() * kernel_size**2)
    if torch.compiler.is_exporting():
        return _filter_traceable(v, attn, ghost_add, ghost_mul, heads,
                                 kernel_size, dilation)
    # each output sums K * K products: float16 / bfloat16 inputs are
    # filtered in float32 (CARAFE's half kernel would sum in half) and the
    # result is returned in v's dtype
    work = compute_dtype(v)
    with full_precision(v.device.type):
        out = _filter(v.to(work), attn.to(work), ghost_add, ghost_mul,
                      heads, kernel_size, dilation, path)
    return out.to(v.dtype)


def _filter(v, attn, ghost_add, ghost_mul, heads, kernel_size, dilation,
            path):
    if path == 'pytorch':
        return _filter_pytorch(v, attn, ghost_add, ghost_mul, heads,
                               kernel_size, dilation)
    out = _attn_term_carafe(v, attn, heads, kernel_size)
    if ghost_add is not None:
        out = out + _depthwise(v, ghost_add, kernel_size, dilation)
    return out


def elsa_filter_unfold(v: Tensor,
                       attn: Tensor,
                       ghost_add: Optional[Tensor] = None,
                       ghost_mul: Optional[Tensor] = None,
                       kernel_size: int = 7,
                       dilation: int = 1) -> Tensor:
    """Reference: the unfold formulation (``K * K`` times the memory of v).

    Same arguments and result as :func:`elsa_filter`; for tests and
    benchmarks only.
    """
    heads, kk = _check_inputs(v, attn, ghost_add, ghost_mul, kernel_size,
                              dilation)
    B, C, H, W = v.shape
    cols = F.unfold(
        v,
        kernel_size,
        dilation=dilation,
        padding=(kernel_size // 2) * dilation)
    cols = cols.view(B, heads, C // heads, kk, H * W)
    filt = attn.to(v.dtype).view(B, heads, 1, kk, H * W)
    if ghost_mul is not None:
        filt = filt * ghost_mul.reshape(1, heads, C // heads, kk, 1)
    if ghost_add is not None:
        filt = filt + ghost_add.reshape(1, heads, C // heads, kk, 1)
    return (cols * filt).sum(3).view(B, C, H, W)
