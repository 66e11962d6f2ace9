"""Position embeddings of plain ViTs at any input size."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_pos_embed(pos_embed: Tensor,
                     src_hw: Tuple[int, int],
                     dst_hw: Tuple[int, int],
                     num_extra_tokens: int = 1,
                     mode: str = 'bicubic') -> Tensor:
    """Resize a ``(1, extra + Hs*Ws, C)`` position embedding to the patch
    grid ``dst_hw``; the first ``num_extra_tokens`` (class token, ...) are
    kept as they are. A no-op when the grids match (in eager mode: a
    compiled or exported graph resizes whatever the grid, an identity at
    equal sizes, so that it holds for every size without a guard)."""
    if not torch.compiler.is_compiling() and tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:,
                                                             num_extra_tokens:]
    if grid.shape[1] != src_hw[0] * src_hw[1]:
        raise ValueError(f'position embedding has {grid.shape[1]} patch '
                         f'entries, not the {src_hw[0]}x{src_hw[1]} grid it '
                         'was declared for (check img_size / patch_size)')
    c = grid.shape[-1]
    grid = grid.reshape(1, *src_hw, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid,
                         size=tuple(dst_hw),
                         mode=mode,
                         align_corners=False)
    grid = grid.flatten(2).transpose(1, 2)
    return torch.cat([extra, grid], dim=1)
