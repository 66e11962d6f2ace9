"""Residual update with layer scale and stochastic depth in one kernel."""
from typing import Optional

import torch
from torch import Tensor


def scaled_residual(x: Tensor,
                    y: Tensor,
                    gamma: Optional[Tensor] = None,
                    drop_prob: float = 0.,
                    training: bool = False) -> Tensor:
    """``x + drop_path(gamma * y)`` without the intermediate tensors.

    ``gamma`` (per-channel layer scale, may be None) and the per-sample
    drop-path mask are folded into one small ``(B, 1, .., C)`` factor, so the
    whole update is a single ``addcmul`` pass over the activations. The mask
    follows mmcv's ``drop_path`` (kept samples rescaled by ``1 / keep``).
    """
    scale = gamma
    if training and drop_prob > 0.:
        keep = 1. - drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device))
        mask = mask.floor_().div_(keep)
        scale = mask if gamma is None else mask * gamma
    if scale is None:
        return x + y
    return torch.addcmul(x, y, scale)
