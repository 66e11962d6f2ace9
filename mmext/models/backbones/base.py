"""The backbone contract every mmext family follows.

A family subclasses :class:`BaseBackbone` and declares

* ``arch_zoo`` (named variants) and ``arch_keys`` (the keys of a custom
  dict arch); :meth:`BaseBackbone.parse_arch` checks and copies either;
* ``stem_names``: attributes (modules or parameters) that run before the
  first block: frozen by ``frozen_stages >= 0``, layer depth 0;
* ``layer_depth_rules``: how parameter names map to layer depths for
  layer-wise learning-rate decay.

A *stage* is a run of blocks that ends in an output position. A
hierarchical model has a few stages of many blocks; a plain ViT declares
one stage per block (:meth:`stage_depths` returns ``[1] * depth``), so its
``out_indices``, ``frozen_stages`` and layer depths count blocks.

A family also declares what it outputs: :meth:`BaseBackbone.stage_channels`
and :meth:`BaseBackbone.stage_strides`, read through ``out_channels`` /
``out_strides`` (for its arch and ``out_indices``) by tests and config
checks.

The base owns index checks, freezing and ``norm_eval``, per-output norms,
the default initialisation and the conversion of token outputs to NCHW maps.
Family groups share a helper beside it: :mod:`.swin_like` (hierarchical
Swin-style stages) and :mod:`.plain_vit` (one stride-``patch_size`` grid).
"""
import copy
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.norm import build_norm
from ..layers.tokens import tokens_to_map

#: kinds of :attr:`BaseBackbone.layer_depth_rules`
LAYER_DEPTH_KINDS = ('stem', 'block', 'stage_first', 'stage_last',
                     'last_block')


def normalize_out_indices(out_indices: Union[int, Sequence[int]],
                          num_stages: int) -> Tuple[int, ...]:
    """Negative indices count from the end; anything out of range, or a
    duplicate, is an error naming the valid range."""
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
    if not result:
        raise ValueError('out_indices is empty: name at least one stage')
    if len(set(result)) != len(result):
        raise ValueError(f'out_indices {tuple(out_indices)} has duplicates')
    return tuple(result)


class BaseBackbone(BaseModule):
    """Base of every mmext backbone (see the module docstring).

    Args:
        arch (str | dict): a name of ``arch_zoo`` or a dict with exactly the
            keys ``arch_keys``.
        out_indices (int | Sequence[int]): stages whose outputs are returned.
        frozen_stages (int): ``-1`` nothing, ``0`` the stem, ``i >= 1`` the
            stem and stages ``0 .. i-1`` with their output norms. Frozen
            parts stay in eval mode across ``train()``.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
        with_cp (bool): gradient checkpointing of each block.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint=PATH)``.
    """
    arch_zoo: Dict[str, dict] = {}
    arch_keys: Tuple[str, ...] = ()
    stem_names: Tuple[str, ...] = ('patch_embed', )
    layer_depth_rules: Tuple[Tuple[str, str], ...] = (
        (r'(patch_embed|stem)\.', 'stem'),
        (r'stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.', 'block'),
        (r'stages\.(?P<stage>\d+)\.downsample_in\.', 'stage_first'),
        (r'stages\.(?P<stage>\d+)\.', 'stage_last'),
        (r'norm(?P<stage>\d+)\.', 'stage_last'),
    )

    def __init__(self,
                 arch: Union[str, dict],
                 out_indices: Union[int, Sequence[int]],
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.parse_arch(arch)
        self.depths = list(self.stage_depths(self.arch_settings))
        self.num_stages = len(self.depths)
        self.out_indices = normalize_out_indices(out_indices, self.num_stages)
        if not isinstance(frozen_stages, int) or \
                not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages must be '
                             f'an int in [-1, {self.num_stages}], got '
                             f'{frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    # -- architecture --------------------------------------------------------
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """The settings of ``arch`` (a zoo name, case-insensitive, or a dict
        with exactly ``arch_keys``), as a deep copy with lists for
        sequences, checked by :meth:`check_arch`."""
        name = cls.__name__
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'unknown {name} arch {arch!r}: use one of '
                                 f'{sorted(cls.arch_zoo)} or a dict with keys '
                                 f'{list(cls.arch_keys)}')
            settings = copy.deepcopy(cls.arch_zoo[key])
        elif isinstance(arch, dict):
            missing = [k for k in cls.arch_keys if k not in arch]
            extra = [k for k in arch if k not in cls.arch_keys]
            if missing or extra:
                raise ValueError(
                    f'custom {name} arch needs exactly the keys '
                    f'{list(cls.arch_keys)}; missing {missing}, unexpected '
                    f'{extra}')
            settings = {
                k: list(v) if isinstance(v, (list, tuple)) else v
                for k, v in copy.deepcopy(arch).items()
            }
        else:
            raise TypeError(f'{name} arch must be a str or a dict, got '
                            f'{type(arch).__name__}')
        cls.check_arch(settings)
        return settings

    @classmethod
    def check_arch(cls, settings: dict) -> None:
        """Family-specific checks of a parsed arch (raise ValueError)."""

    @classmethod
    def stage_depths(cls, settings: dict) -> List[int]:
        """Blocks per stage (a plain ViT: ``[1] * depth``)."""
        return list(settings['depths'])

    @classmethod
    def arch_name(cls, settings: dict) -> Optional[str]:
        """The shortest zoo name whose settings equal ``settings``."""
        names = [
            n for n, s in cls.arch_zoo.items() if cls.parse_arch(n) == settings
        ]
        return min(names, key=len) if names else None

    def drop_path_rates(self, drop_path_rate: float) -> List[List[float]]:
        """Stochastic-depth rate of every block, rising linearly from 0 to
        ``drop_path_rate`` over all blocks, split by stage."""
        rates = torch.linspace(0,
                               drop_path_rate,
                               sum(self.depths),
                               device='cpu').tolist()
        starts = [sum(self.depths[:i]) for i in range(self.num_stages + 1)]
        return [rates[a:b] for a, b in zip(starts, starts[1:])]

    def check_input(self, x: Tensor) -> None:
        """A clear error for anything but a ``(B, in_channels, H, W)``
        batch."""
        channels = getattr(self, 'in_channels', 3)
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(
                f'{type(self).__name__} expects a (B, {channels}, H, W) '
                f'tensor, got shape {tuple(x.shape)}; set in_channels to '
                'match the input')

    # -- outputs --------------------------------------------------------------
    def stage_channels(self) -> List[int]:
        """Channels of the output of every stage (declared by the family;
        timm's ``feature_info``, detectron2's ``output_shape()``)."""
        raise NotImplementedError(
            f'{type(self).__name__} declares no stage_channels()')

    def stage_strides(self) -> List[int]:
        """Stride (input pixels per output position) of every stage."""
        raise NotImplementedError(
            f'{type(self).__name__} declares no stage_strides()')

    def outputs_maps(self) -> bool:
        """Whether the outputs are NCHW maps (not class tokens or token
        sequences, which have no stride)."""
        return getattr(self, 'out_type', 'featmap') == 'featmap'

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output, in ``out_indices`` order: what a neck's
        ``in_channels`` must be."""
        channels = self.stage_channels()
        return tuple(channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[Optional[int], ...]:
        """Stride of each output map (None where the output is no map);
        an input of size ``H`` gives ``ceil(H / stride)`` positions."""
        strides = self.stage_strides()
        return tuple(strides[i] if self.outputs_maps() else None
                     for i in self.out_indices)

    def add_out_norms(self, channels: Sequence[int], norm_cfg: dict) -> None:
        """Register ``norm{i}`` (``channels[i]`` wide) for each out index."""
        for i in self.out_indices:
            self.add_module(f'norm{i}', build_norm(norm_cfg, channels[i]))

    def to_output(self, index: int, tokens: Tensor, hw: Tuple[int,
                                                              int]) -> Tensor:
        """Tokens ``(B, H*W, C)`` of stage ``index`` -> its output map
        ``(B, C, H, W)``, through ``norm{index}`` when there is one."""
        norm = getattr(self, f'norm{index}', None)
        if norm is not None:
            tokens = norm(tokens)
        return tokens_to_map(tokens, hw).contiguous()

    # -- freezing -------------------------------------------------------------
    def stem_modules(self) -> list:
        return [
            getattr(self, n) for n in self.stem_names
            if isinstance(getattr(self, n, None), (nn.Module, nn.Parameter))
        ]

    def stage_modules(self, index: int) -> list:
        """What freezing stage ``index`` freezes: the stage and its output
        norm."""
        parts = [self.stages[index]]
        norm = getattr(self, f'norm{index}', None)
        if norm is not None:
            parts.append(norm)
        return parts

    def freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        parts = self.stem_modules()
        for i in range(min(self.frozen_stages, self._num_built_stages())):
            parts += self.stage_modules(i)
        for part in parts:
            if isinstance(part, nn.Parameter):
                part.requires_grad = False
                continue
            part.eval()
            for p in part.parameters():
                p.requires_grad = False

    def _num_built_stages(self) -> int:
        # a backbone may skip building stages past its last output
        stages = getattr(self, 'stages', None)
        return self.num_stages if stages is None else len(stages)

    def train(self, mode: bool = True):
        super().train(mode)
        self.freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- initialisation -------------------------------------------------------
    def init_weights(self):
        """Pretrained weights through ``init_cfg`` (strictly: a file of
        another arch is an error, see :func:`load_pretrained_strict`); else
        the sub-modules' own ``init_weights`` (e.g. position tables), then
        :meth:`init_from_scratch`."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmext.utils.checkpoint import load_pretrained_strict
            self.init_from_scratch()  # for what a file may lack (out norms)
            load_pretrained_strict(self,
                                   cfg['checkpoint'],
                                   prefix=cfg.get('prefix'),
                                   unused=self.unused_pretrained_keys(),
                                   optional=self.optional_pretrained_keys())
            self._is_init = True
            return
        super().init_weights()
        if self.init_cfg is None:
            self.init_from_scratch()

    def unused_pretrained_keys(self) -> Tuple[str, ...]:
        """Key prefixes of a full backbone checkpoint this instance leaves
        out: stages past the last output and the norms of other outputs."""
        unbuilt = tuple(
            f'stages.{i}.'
            for i in range(self._num_built_stages(), self.num_stages))
        return unbuilt + tuple(f'norm{i}.' for i in range(self.num_stages)
                               if i not in self.out_indices)

    def optional_pretrained_keys(self) -> Tuple[str, ...]:
        """Key prefixes a pretrained file may lack: the per-output norms,
        which an ImageNet classifier has not (they start fresh, as in the
        official fine-tuning)."""
        return tuple(f'norm{i}.' for i in self.out_indices)

    def init_from_scratch(self) -> None:
        """:meth:`init_module` on every module, in order."""
        for m in self.modules():
            self.init_module(m)

    def init_module(self, m: nn.Module) -> None:
        """Truncated-normal linear layers with zero bias, unit norms."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- layer-wise lr decay --------------------------------------------------
    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """``(layer_depth, num_layers)`` of a parameter, for mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``: the stem is layer 0,
        block ``j`` of stage ``i`` is ``sum(depths[:i]) + j + 1`` and
        anything the rules do not match (heads, necks) the last layer."""
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        depth = self.match_layer_depth(param_name[len(prefix):])
        return (num_layers - 1 if depth is None else depth), num_layers

    def match_layer_depth(self, name: str) -> Optional[int]:
        """The depth :attr:`layer_depth_rules` give ``name``, or None."""
        for pattern, kind in self.layer_depth_rules:
            m = re.match(pattern, name)
            if m is None:
                continue
            groups = m.groupdict()
            stage = int(groups.get('stage') or 0)
            block = int(groups.get('block') or 0)
            first = sum(self.depths[:stage]) + 1
            if kind == 'stem':
                return 0
            if kind == 'block':
                return first + block
            if kind == 'stage_first':
                return first
            if kind == 'stage_last':
                return sum(self.depths[:stage + 1])
            if kind == 'last_block':  # e.g. a final norm every output uses
                return sum(self.depths)
            raise ValueError(f'unknown layer-depth kind {kind!r}; use one of '
                             f'{LAYER_DEPTH_KINDS}')
        return None
