"""The PyTorch ELSA filter as ``torch.ops.mmext.elsa_shift_accumulate``.

``torch.compile`` traces Python: the filter's loop over the ``K * K`` taps
and over bands of rows (whose number depends on the map size) would be
unrolled into the graph and fix the map size there, so every new input
size would recompile. As a custom op the filter is one opaque node whose
output has the shape of ``v`` for any size; at run time it executes the
same code as eager mode (:func:`~mmext.ops.elsa.shift_accumulate` and its
hand-written backward). Eager mode keeps calling the autograd function
directly; :func:`~mmext.ops.elsa.elsa_filter` picks the op only while
compiling.
"""
from typing import List, Optional

import torch
from torch import Tensor

from .elsa import shift_accumulate, shift_accumulate_backward

__all__ = ['elsa_shift_accumulate']


@torch.library.custom_op('mmext::elsa_shift_accumulate', mutates_args=())
def elsa_shift_accumulate(v: Tensor, attn: Tensor, mul: Optional[Tensor],
                          add: Optional[Tensor], kernel_size: int,
                          dilation: int) -> Tensor:
    return shift_accumulate(v, attn, mul, add, kernel_size, dilation)


@elsa_shift_accumulate.register_fake
def _(v, attn, mul, add, kernel_size, dilation):
    return torch.empty_like(v, memory_format=torch.contiguous_format)


@torch.library.custom_op('mmext::elsa_shift_accumulate_backward',
                         mutates_args=())
def elsa_shift_accumulate_backward(grad_out: Tensor, v: Tensor, attn: Tensor,
                                   mul: Optional[Tensor],
                                   add: Optional[Tensor], kernel_size: int,
                                   dilation: int,
                                   needs: List[bool]) -> List[Tensor]:
    grads = shift_accumulate_backward(grad_out, v, attn, mul, add,
                                      kernel_size, dilation, needs)
    # a custom op returns tensors only: an empty one stands for None
    return [v.new_empty(0) if g is None else g for g in grads]


@elsa_shift_accumulate_backward.register_fake
def _(grad_out, v, attn, mul, add, kernel_size, dilation, needs):
    inputs = (v, attn, mul, add)
    return [
        torch.empty_like(t, memory_format=torch.contiguous_format)
        if need and t is not None else v.new_empty(0)
        for t, need in zip(inputs, needs)
    ]


def _setup_context(ctx, inputs, output):
    v, attn, mul, add, kernel_size, dilation = inputs
    ctx.save_for_backward(v, attn, mul, add)
    ctx.kernel_size, ctx.dilation = kernel_size, dilation


def _backward(ctx, grad_out):
    needs = [bool(n) for n in ctx.needs_input_grad[:4]]
    grads = torch.ops.mmext.elsa_shift_accumulate_backward(
        grad_out, *ctx.saved_tensors, ctx.kernel_size, ctx.dilation, needs)
    grads = [g if n else None for g, n in zip(grads, needs)]
    return (*grads, None, None)


elsa_shift_accumulate.register_autograd(_backward,
                                        setup_context=_setup_context)
