"""Where mixed precision keeps float32.

Under autocast (``torch.autocast('cuda' | 'cpu', dtype=float16 |
bfloat16)``) matrix products and convolutions run in the low-precision
dtype. A few steps lose too much there, or overflow float16's range
(65504), and run in float32 instead, as CUDA autocast's own float32 list
does for norms and softmax (CPU autocast leaves both in the low dtype):

* LayerNorm (:func:`layer_norm`): its input is the residual stream, whose
  values grow with depth; its float32 output keeps that stream in float32;
* softmax (:func:`softmax`) and attention logits computed outside
  ``scaled_dot_product_attention`` (whose kernels already accumulate the
  logits and the softmax in float32);
* running sums and thresholds (A-ViT's halting scores, the ELSA filter's
  accumulation over its taps).

Float32 and float64 inputs pass through unchanged (the float64 goldens
see exactly the plain ops). Outside autocast, a low-precision input (a
model cast with ``.half()``) gets its own dtype back.
"""
import contextlib
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'LOW_PRECISION', 'is_low_precision', 'upcast', 'compute_dtype',
    'full_precision', 'restore_dtype', 'layer_norm', 'softmax'
]

#: the dtypes mixed precision computes in
LOW_PRECISION = (torch.float16, torch.bfloat16)


def is_low_precision(x: Tensor) -> bool:
    return x.dtype in LOW_PRECISION


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for a low-precision ``x``, else ``x``'s own dtype."""
    return torch.float32 if is_low_precision(x) else x.dtype


def upcast(x: Optional[Tensor]) -> Optional[Tensor]:
    """``x`` in float32 if it is float16 / bfloat16 (None stays None)."""
    return x.float() if x is not None and is_low_precision(x) else x


def full_precision(device_type: str):
    """A context in which autocast does not cast (ops run in the dtypes
    of their inputs)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def restore_dtype(out: Tensor, like: Tensor) -> Tensor:
    """The float32 result ``out`` of a step computed for ``like``: kept in
    float32 under autocast (the next matmul casts it down, as CUDA autocast
    does after its float32 ops), in ``like``'s dtype otherwise."""
    if torch.is_autocast_enabled(like.device.type):
        return out
    return out.to(like.dtype)


def layer_norm(x: Tensor, normalized_shape: Sequence[int],
               weight: Optional[Tensor], bias: Optional[Tensor],
               eps: float) -> Tensor:
    """``F.layer_norm`` computed in float32 for low-precision inputs."""
    if not is_low_precision(x):
        return F.layer_norm(x, normalized_shape, weight, bias, eps)
    with full_precision(x.device.type):
        out = F.layer_norm(x.float(), normalized_shape, upcast(weight),
                           upcast(bias), eps)
    return restore_dtype(out, x)


def softmax(x: Tensor, dim: int) -> Tensor:
    """``x.softmax(dim)`` computed in float32 for low-precision inputs."""
    if not is_low_precision(x):
        return x.softmax(dim)
    with full_precision(x.device.type):
        out = x.float().softmax(dim)
    return restore_dtype(out, x)
