"""Mixed-precision training on every device.

mmengine's ``AmpOptimWrapper`` (0.10.7) refuses to be built without a GPU
(``assert is_cuda_available() or is_npu_available() or
is_mlu_available()``), and its ``GradScaler`` is CUDA's.
:class:`DeviceAmpOptimWrapper` is that wrapper on an accelerator, and on a
CPU runs the forward pass under ``torch.autocast('cpu',
dtype=torch.bfloat16)`` without loss scaling: bfloat16 has float32's
exponent range, so gradients neither overflow nor underflow where float32
would not (mmengine's ``autocast`` allows only bfloat16 on a CPU). The
weights and the optimizer stay in float32, so checkpoints are float32.

mmcv 2.1's ``nms`` and ``roi_align`` have no bfloat16 CPU kernels (mmdet's
two-stage detectors call both while training). On a CPU the wrapper gives
their autograd functions the autocast rule that torchvision registers for
its own ``nms`` / ``roi_align``: under CPU autocast they receive float32
inputs (``torch.amp.custom_fwd(cast_inputs=float32)``); anywhere else they
are unchanged.
"""
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmext.registry import OPTIM_WRAPPERS

__all__ = ['DeviceAmpOptimWrapper', 'CPU_AMP_DTYPE']

#: the autocast dtype on CPUs
CPU_AMP_DTYPE = torch.bfloat16


def mmcv_ops_in_fp32_under_cpu_autocast() -> None:
    """Run mmcv's ``NMSop`` and ``RoIAlignFunction`` in float32 inside CPU
    autocast regions (idempotent; no effect outside them)."""
    from mmcv.ops.nms import NMSop
    from mmcv.ops.roi_align import RoIAlignFunction
    for function in (NMSop, RoIAlignFunction):
        if function.__dict__.get('_mmext_cpu_autocast'):
            continue
        function.forward = staticmethod(
            torch.amp.custom_fwd(function.forward, device_type='cpu',
                                 cast_inputs=torch.float32))
        if 'backward' in function.__dict__:
            function.backward = staticmethod(
                torch.amp.custom_bwd(function.backward, device_type='cpu'))
        function._mmext_cpu_autocast = True


def _as_dtype(dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f'unknown dtype {dtype!r}; use "float16" or '
                             '"bfloat16"')
        return getattr(torch, dtype)
    return dtype


@OPTIM_WRAPPERS.register_module()
class DeviceAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` on a GPU (NPU, MLU, ...), bfloat16 autocast
    without loss scaling on a CPU; ``dtype='float32'`` switches mixed
    precision off on any device.

    Args:
        loss_scale, dtype, use_fsdp, **kwargs: as ``AmpOptimWrapper``. On a
            CPU ``loss_scale`` does not apply and ``dtype`` must be None,
            bfloat16 or float32.
    """

    def __init__(self,
                 loss_scale='dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 **kwargs):
        self.device_type = get_device()
        dtype = _as_dtype(dtype)
        if dtype is torch.float32:
            self._init_unscaled(torch.float32, **kwargs)
        elif self.device_type != 'cpu':
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
        elif dtype in (None, CPU_AMP_DTYPE):
            self._init_unscaled(CPU_AMP_DTYPE, **kwargs)
            mmcv_ops_in_fp32_under_cpu_autocast()
        else:
            raise ValueError(
                f'mixed precision on a CPU runs in bfloat16, not {dtype}: set '
                "optim_wrapper.dtype='bfloat16' (or leave it unset), or "
                "'float32' to train without it")

    def _init_unscaled(self, cast_dtype: torch.dtype, **kwargs) -> None:
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.cast_dtype = cast_dtype
        self.loss_scaler = None  # bfloat16 has float32's range

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            return OptimWrapper.backward(self, loss, **kwargs)
        return super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            return OptimWrapper.step(self, **kwargs)
        return super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            # e.g. a checkpoint trained on a GPU: no use for its loss scale
            state_dict.pop('loss_scaler', None)
            return OptimWrapper.load_state_dict(self, state_dict)
        return super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        if self.loss_scaler is not None:  # AmpOptimWrapper's
            with super().optim_context(model):
                yield
            return
        with OptimWrapper.optim_context(self, model), torch.autocast(
                self.device_type,
                dtype=self.cast_dtype,
                enabled=self.cast_dtype is not torch.float32,
                cache_enabled=False):
            yield
