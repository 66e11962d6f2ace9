"""Multi-head attention on token sequences through
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA).

SDPA picks a fused kernel (flash / memory-efficient on CUDA, the blocked flash
kernel on CPU), so the ``N x M`` score matrix is never materialised: this is
what makes high-resolution inputs affordable in time and memory.

Head layout convention: a projection of width ``k * C`` is read as
``(k, num_heads, head_dim)`` per token, i.e. ``C``-wide chunks (q, k, v, ...)
each split into heads. This is the layout of ``nn.Linear(C, k * C)`` followed
by ``reshape(B, N, k, heads, head_dim)`` used by most ViT code, so fused
projections load weights that were trained as separate ``q``/``kv`` layers
after concatenating them along the output dimension.
"""
from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, num_chunks: int, num_heads: int) -> Tuple[Tensor]:
    """``(B, N, num_chunks * C)`` -> ``num_chunks`` views ``(B, heads, N, d)``.

    No copy: SDPA accepts the strided views.
    """
    b, n, width = x.shape
    head_dim = width // (num_chunks * num_heads)
    if head_dim * num_chunks * num_heads != width:
        raise ValueError(f'width {width} is not {num_chunks} chunks of '
                         f'{num_heads} heads')
    # unbind (not indexing): its backward is one stack, where indexing would
    # zero-fill and copy a full-size gradient per chunk
    chunks = x.view(b, n, num_chunks, num_heads, head_dim).unbind(2)
    return tuple(c.transpose(1, 2) for c in chunks)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, heads, N, d)`` -> ``(B, N, heads * d)`` (a view for SDPA's
    outputs, which are laid out token-major)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attend(q: Tensor, k: Tensor, v: Tensor,
           scale: Optional[float] = None,
           attn_mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head attention on ``(B, heads, N, d)`` tensors, returned as
    ``(B, N, heads * d)``. ``scale`` defaults to ``d ** -0.5``;
    ``attn_mask`` is SDPA's (boolean: True takes part; float: added to the
    scores), broadcast to ``(B, heads, N, M)``."""
    # keys/values are re-read for every block of queries: the CPU kernel is
    # ~15% faster on head-contiguous ones than on strided views of a fused
    # projection, for the price of one copy. Copying the queries too lets
    # autograd free the projection output instead of keeping it next to
    # the copies.
    return merge_heads(
        F.scaled_dot_product_attention(
            q.contiguous(), k.contiguous(), v.contiguous(),
            attn_mask=attn_mask, scale=scale))


class SelfAttention(nn.Module):
    """Plain multi-head self-attention with a fused qkv projection.

    Args:
        embed_dims (int): token width ``C``.
        num_heads (int): heads; ``C`` must be divisible by it.
        qkv_bias (bool): bias of the qkv projection. Default True.
        proj_bias (bool): bias of the output projection. Default True.
    """

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias=True,
                 proj_bias=True):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} must be divisible by '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, 3 * embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims, bias=proj_bias)

    def forward(self, x: Tensor, num_queries: Optional[int] = None,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        """``num_queries``: only the first that many tokens query (all of
        them are keys/values); the output then has that many tokens.
        ``attn_mask``: see :func:`attend`."""
        if num_queries is None:
            q, k, v = split_heads(self.qkv(x), 3, self.num_heads)
        else:  # project queries for those tokens only
            w, b = self.qkv.weight, self.qkv.bias
            c = w.shape[1]
            q, = split_heads(
                F.linear(x[:, :num_queries], w[:c],
                         None if b is None else b[:c]), 1, self.num_heads)
            k, v = split_heads(
                F.linear(x, w[c:], None if b is None else b[c:]), 2,
                self.num_heads)
        return self.proj(attend(q, k, v, attn_mask=attn_mask))
