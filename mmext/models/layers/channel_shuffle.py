"""Channel shuffle of tiny ViTs ("Plug'n Play Channel Shuffle Module for
Enhancing Tiny Vision Transformers", Xu et al., arXiv:2310.05642).

Tokens are twice as wide as the block that updates them: a block runs on
the first (*attended*) half of the channels, the second (*idle*) half passes
through, and the two halves are interleaved (a groups=2 channel shuffle)
before the next block.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    'channel_shuffle', 'ChannelShuffleMixin', 'RESCALE_MODES',
    'learnable_rescale_keys'
]

#: ``rescale`` values of :class:`ChannelShuffleMixin`
RESCALE_MODES = (None, 'fixed', 'learnable')


def channel_shuffle(x: Tensor,
                    idle: Optional[Tensor] = None,
                    inverse: bool = False) -> Tensor:
    """Groups=2 channel shuffle over the last dimension.

    ``[a_0 .. a_{C-1}, b_0 .. b_{C-1}] -> [a_0, b_0, a_1, b_1, ...]``, i.e.
    ShuffleNet's shuffle with two groups. With ``idle``, ``x`` is the first
    group and ``idle`` the second: the result equals
    ``channel_shuffle(torch.cat([x, idle], -1))`` but each half is copied
    once (no concatenated intermediate). ``inverse=True`` undoes the shuffle
    (``x`` only).
    """
    if inverse:
        if idle is not None:
            raise ValueError('channel_shuffle(inverse=True) takes one tensor')
        return x.unflatten(-1, (-1, 2)).transpose(-1, -2).flatten(-2)
    if idle is None:
        if x.shape[-1] % 2:
            raise ValueError(f'channel_shuffle needs an even number of '
                             f'channels, got {x.shape[-1]}')
        x, idle = x.chunk(2, dim=-1)
    elif x.shape != idle.shape:
        raise ValueError(f'channel_shuffle: the two groups differ in shape: '
                         f'{tuple(x.shape)} vs {tuple(idle.shape)}')
    # the stacked tensor is contiguous, so flattening it is a view
    return torch.stack((x, idle), dim=-1).flatten(-2)


def learnable_rescale_keys(model: nn.Module) -> Tuple[str, ...]:
    """Names of the learnable shortcut factors in ``model``: a checkpoint of
    the released (fixed-rescale) model lacks them, and they keep their
    initial value, which reproduces it."""
    return tuple(name for name, _ in model.named_parameters()
                 if name.endswith('shortcut_scales'))


class ChannelShuffleMixin:
    """Turns a pre-norm block (``norm1``, ``attn``, ``drop_path``, ``norm2``,
    ``ffn`` as :class:`~mmext.models.layers.PreNormBlock`) into a channel
    shuffle block over tokens twice its width::

        attended, idle = x[..., :C/2], x[..., C/2:]
        y = a * attended + drop_path(attn(norm1(attended)))
        y = b * y + ffn(norm2(y))
        return channel_shuffle(y, idle)

    ``rescale`` sets the shortcut factors ``a, b``: None (1, 1); 'fixed'
    (``rescale_init``, the authors' released Swin uses 1/2); 'learnable'
    (the paper's channel rescale: two learnable scalars per block,
    ``shortcut_scales``, starting at ``rescale_init`` so that an untrained
    block equals the released one). Call :meth:`init_rescale` in
    ``__init__``.
    """

    def init_rescale(self, rescale: Optional[str],
                     rescale_init: float) -> None:
        if rescale not in RESCALE_MODES:
            raise ValueError(f'rescale must be one of {RESCALE_MODES}, got '
                             f'{rescale!r}')
        self.rescale = rescale
        self.rescale_init = float(rescale_init)
        if rescale == 'learnable':
            self.shortcut_scales = nn.Parameter(
                torch.full((2, ), self.rescale_init))
        else:
            self.register_parameter('shortcut_scales', None)

    def _scales(self) -> Tuple:
        if self.rescale == 'learnable':
            return self.shortcut_scales.unbind(0)
        if self.rescale == 'fixed':
            return self.rescale_init, self.rescale_init
        return None, None

    @staticmethod
    def _scaled(x: Tensor, scale) -> Tensor:
        return x if scale is None else x * scale

    def _mix(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """The token mixer on normalised attended channels."""
        return self.attn(x, hw_shape)

    def _forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        attended, idle = x.chunk(2, dim=-1)  # views: nothing copied here
        a, b = self._scales()
        y = self._scaled(attended, a) + self.drop_path(
            self._mix(self.norm1(attended), hw_shape))
        y = self.ffn(self.norm2(y), identity=self._scaled(y, b))
        return channel_shuffle(y, idle)
