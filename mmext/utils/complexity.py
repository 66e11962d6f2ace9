"""Multiply-accumulate (MAC) counts of a model run, by op kind and by module.

Counting happens at the dispatcher (:class:`torch.utils.flop_counter.
FlopCounterMode`): matrix products, convolutions and attention are counted
from the shapes actually run, so shape-dependent control flow (token counts
that follow the input size, tiling) is counted as executed. Two additions:

* PyTorch's counter has no formula for the CPU flavour of
  ``scaled_dot_product_attention``; it is added here (forward and backward).
  Its convolution-backward formula ignores groups for the weight gradient;
  it is replaced here.
* Ops computed outside the dispatcher (mmext's ELSA filter: a hand-written
  shift-and-accumulate, or mmcv's CARAFE kernel) report their MACs through
  :func:`record_macs` while a count is running.

Element-wise ops, normalisation and softmax are not counted (the usual
convention of detection/segmentation FLOPs tables). One MAC is one multiply
and one add, i.e. two FLOPs; mmdet/mmseg "FLOPs" tables report MACs.
"""
import contextlib
import math
from collections import defaultdict
from typing import Dict, List, Optional

import torch
import torch.nn as nn

# torch.utils.flop_counter is imported where it is used: it pulls in triton
# (~0.3 s), and this module is imported with mmext.ops for record_macs

aten = torch.ops.aten

_active: List[Dict[str, int]] = []


def record_macs(kind: str, macs: int) -> None:
    """Add ``macs`` under ``kind`` to every running count (no-op otherwise).

    For ops the dispatcher cannot see, e.g. custom kernels."""
    for counts in _active:
        counts[kind] += int(macs)


def _sdpa_macs(q_shape, k_shape, v_shape, backward=False) -> int:
    *batch, n, d = q_shape
    m, dv = k_shape[-2], v_shape[-1]
    b = math.prod(batch)
    if backward:
        # scores recomputed (q k^T), grad of the probabilities (dO v^T) and
        # of v (P^T dO), then grad q (dS k) and grad k (dS^T q)
        return b * n * m * (3 * d + 2 * dv)
    return b * n * m * (d + dv)  # q k^T, then P v


def _sdpa_cpu_flops(q_shape, k_shape, v_shape, *args, out_shape=None,
                    **kwargs) -> int:
    return 2 * _sdpa_macs(q_shape, k_shape, v_shape)


def _sdpa_cpu_backward_flops(grad_out_shape, q_shape, k_shape, v_shape,
                             *args, out_shape=None, **kwargs) -> int:
    return 2 * _sdpa_macs(q_shape, k_shape, v_shape, backward=True)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride,
                         _padding, _dilation, transposed, _output_padding,
                         _groups, output_mask, out_shape=None) -> int:
    # each requested gradient costs what the forward conv costs; PyTorch's
    # own formula ignores groups for the weight gradient (a depthwise conv
    # would count C times too much)
    from torch.utils.flop_counter import conv_flop_count
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


_CUSTOM_FORMULAS = {
    aten.convolution_backward: _conv_backward_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
    _sdpa_cpu_backward_flops,
}

_KIND_OF_OP = {
    'mm': 'matmul', 'addmm': 'matmul', 'bmm': 'matmul', 'baddbmm': 'matmul',
    'convolution': 'conv', '_convolution': 'conv',
    'convolution_backward': 'conv',
}


def _kind(op) -> str:
    name = str(op).split('.')[-1] if '.' in str(op) else str(op)
    name = name.replace('aten::', '')
    if 'attention' in name:
        return 'attention'
    return _KIND_OF_OP.get(name, name)


class ComplexityReport(dict):
    """``total_macs``, ``macs_by_kind`` (``matmul``: linear layers and
    other matrix products; ``conv``; ``attention``: fused SDPA kernels,
    while attention written as explicit products counts as ``matmul``; and
    kinds reported through :func:`record_macs`), ``macs_by_module``
    (module paths cut to the requested depth) and ``params``."""

    def gmacs(self, key: Optional[str] = None) -> float:
        value = self['total_macs'] if key is None else \
            self['macs_by_kind'].get(key, 0)
        return value / 1e9


def count_macs(model: nn.Module, inputs, backward: bool = False,
               depth: int = 1) -> ComplexityReport:
    """Count the MACs of ``model(*inputs)`` (plus its backward pass of the
    sum of all outputs with ``backward=True``).

    The model runs as it is (train or eval mode is the caller's choice);
    without ``backward`` it runs under ``torch.no_grad()``. ``depth``: how
    deep ``macs_by_module`` goes into the module tree.
    """
    from torch.utils.flop_counter import FlopCounterMode
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    extra: Dict[str, int] = defaultdict(int)
    counter = FlopCounterMode(display=False, depth=depth + 1,
                              custom_mapping=_CUSTOM_FORMULAS)
    _active.append(extra)
    try:
        grad = contextlib.nullcontext() if backward else torch.no_grad()
        with grad, counter:
            out = model(*inputs)
            if backward:
                tensors = [t for t in iter_tensors(out) if t.requires_grad]
                if not tensors:
                    raise ValueError('backward=True but no output requires '
                                     'grad (is the model frozen?)')
                sum(t.float().mean() for t in tensors).backward()
    finally:
        _active.remove(extra)

    by_kind: Dict[str, int] = defaultdict(int)
    counts = counter.get_flop_counts()
    for op, flops in counts.get('Global', {}).items():
        by_kind[_kind(op)] += flops // 2
    for kind, macs in extra.items():
        by_kind[kind] += macs
    by_module = _roll_up(counts, type(model).__name__, depth)
    return ComplexityReport(
        total_macs=sum(by_kind.values()),
        macs_by_kind=dict(sorted(by_kind.items())),
        macs_by_module=by_module,
        params=sum(p.numel() for p in model.parameters()))


def _roll_up(counts, root: str, depth: int) -> Dict[str, int]:
    """MACs per module path cut to ``depth`` components. A container
    without a forward (``ModuleList``) is not tracked by the counter: it
    gets the sum of its shallowest tracked descendants."""
    tracked = {
        name[len(root) + 1:]: sum(ops.values()) // 2
        for name, ops in counts.items() if name.startswith(root + '.')
    }
    by_module: Dict[str, int] = defaultdict(int)
    for rel, macs in tracked.items():
        parts = rel.split('.')
        key = '.'.join(parts[:depth])
        if key in tracked:
            by_module[key] = tracked[key]
            continue
        inside = [
            '.'.join(parts[:i]) for i in range(depth + 1, len(parts))
        ]
        if not any(a in tracked for a in inside):
            by_module[key] += macs
    return dict(by_module)


def iter_tensors(out):
    """Every tensor in a (nested) tuple / list / dict of outputs."""
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for o in out:
            yield from iter_tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from iter_tensors(o)
