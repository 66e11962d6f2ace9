"""Behaviour every hierarchical backbone in mmext shares with the mmdet /
mmseg / mmpretrain backbones: stage freezing, ``norm_eval``, per-output norms
and layer ids for layer-wise learning-rate decay."""
import re
from typing import Iterable, List, Sequence

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from torch.nn.modules.batchnorm import _BatchNorm


def normalize_out_indices(out_indices: Sequence[int],
                          num_stages: int) -> tuple:
    """Negative indices count from the end; anything else out of range is an
    error naming the valid range."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    result = []
    for i in out_indices:
        j = i + num_stages if i < 0 else i
        if not 0 <= j < num_stages:
            raise ValueError(f'out_indices {tuple(out_indices)} must index '
                             f'stages 0..{num_stages - 1} (or -1..'
                             f'-{num_stages})')
        result.append(j)
    if len(set(result)) != len(result):
        raise ValueError(f'out_indices {tuple(out_indices)} has duplicates')
    return tuple(result)


class BackboneMixin:
    """Mix into a backbone *before* ``BaseModule``.

    The backbone sets ``self.depths`` (blocks per stage), ``self.stages``
    (one module per stage whose blocks live in ``.blocks``),
    ``self.frozen_stages`` and ``self.norm_eval``, and may override
    :meth:`stem_modules` / :meth:`stage_modules`.

    Conventions (those of mmdet's Swin):

    * ``frozen_stages``: ``-1`` nothing, ``0`` the stem, ``i >= 1`` the stem
      and stages ``0 .. i-1`` with their output norms. Frozen parts stay in
      eval mode (BatchNorm statistics included) even after ``train()``.
    * output norms are ``norm{i}`` attributes (see :meth:`add_out_norms`).
    * ``get_layer_depth``: stem = layer 0; block ``j`` of stage ``i`` =
      ``sum(depths[:i]) + j + 1``; a stage's parts that run before its
      blocks (see ``pre_block_parts``) share the depth of its first block,
      the parts after them (norms, downsampling at the end of a stage) that
      of its last block; anything else is the last layer.
    """
    stem_names: Sequence[str] = ('stem', 'patch_embed')
    pre_block_parts: Sequence[str] = ('downsample_in', )

    # -- structure hooks ---------------------------------------------------
    def stem_modules(self) -> List[nn.Module]:
        return [getattr(self, n) for n in self.stem_names
                if isinstance(getattr(self, n, None), nn.Module)]

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.stages[index]]
        norm = getattr(self, f'norm{index}', None)
        if isinstance(norm, nn.Module):
            modules.append(norm)
        return modules

    def add_out_norms(self, channels: Sequence[int], indices: Iterable[int],
                      norm_cfg: dict) -> None:
        """Register ``norm{i}`` (``norm_cfg``, ``channels[i]`` wide) for each
        output index ``i``."""
        for i in indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, channels[i])[1])

    # -- freezing / train mode ---------------------------------------------
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules = self.stem_modules()
        # a backbone may skip building stages past its last output
        for i in range(min(self.frozen_stages, len(self.stages))):
            modules += self.stage_modules(i)
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- layer-wise lr decay -----------------------------------------------
    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """``(layer_depth, num_layers)`` of a parameter, for mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``."""
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers  # e.g. the head
        name = param_name[len(prefix):]
        first_of_stage = [sum(self.depths[:i]) + 1
                          for i in range(len(self.depths))]
        if name.split('.')[0] in self.stem_names:
            depth = 0
        elif m := re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', name):
            depth = first_of_stage[int(m.group(1))] + int(m.group(2))
        elif m := re.match(r'stages\.(\d+)\.(\w+)', name):
            stage = int(m.group(1))
            if m.group(2) in self.pre_block_parts:
                depth = first_of_stage[stage]
            else:
                depth = sum(self.depths[:stage + 1])
        elif m := re.match(r'norm(\d+)\.', name):
            depth = sum(self.depths[:int(m.group(1)) + 1])
        else:
            depth = num_layers - 1
        return depth, num_layers
