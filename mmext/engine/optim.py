"""Layer-wise learning-rate decay for detectors and segmentors.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` gives each
parameter ``lr * layer_decay_rate ** (num_layers - depth - 1)`` with
``(depth, num_layers)`` from ``get_layer_depth``, which every mmext backbone
has. It asks the *model* for that method, though: mmpretrain classifiers
forward it to their backbone, mmdet detectors and mmseg segmentors have none,
so it raises ``NotImplementedError`` for them. mmdet's and mmseg's own
``LearningRateDecayOptimizerConstructor`` pick the layer ids by backbone
class name (ConvNeXt, BEiT, MAE) and raise for any other backbone.

:class:`LayerDecayOptimWrapperConstructor` is therefore mmpretrain's
constructor plus the one missing piece: for a model without
``get_layer_depth`` it uses ``model.backbone.get_layer_depth`` with the
prefix ``'backbone.'``, so necks and heads get depth ``num_layers - 1``,
i.e. the base learning rate.
"""
from functools import partial

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor

from mmext.registry import OPTIM_WRAPPER_CONSTRUCTORS

# the paramwise_cfg keys mmpretrain's constructor reads; anything else
# (lr_mult, dwconv_decay_mult, ...) would be silently ignored by it
SUPPORTED_KEYS = ('layer_decay_rate', 'custom_keys', 'bias_decay_mult',
                  'norm_decay_mult', 'flat_decay_mult')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """Layer-wise lr decay for any model whose backbone (or the model
    itself) has ``get_layer_depth``.

    ``paramwise_cfg``: ``layer_decay_rate`` (e.g. 0.9) and, optionally,
    ``norm_decay_mult`` / ``bias_decay_mult`` / ``flat_decay_mult`` and
    ``custom_keys`` with ``decay_mult`` (weight decay only; learning rates
    come from the depth alone). Frozen parameters are left out of the
    optimizer.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(SUPPORTED_KEYS))
        if unknown:
            raise ValueError(
                f'paramwise_cfg: {unknown} not supported with layer-wise lr '
                f'decay (supported: {", ".join(SUPPORTED_KEYS)})')
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError('paramwise_cfg.layer_decay_rate is missing '
                             '(e.g. layer_decay_rate=0.9)')
        for key, cfg in paramwise_cfg.get('custom_keys', {}).items():
            extra = sorted(set(cfg) - {'decay_mult'})
            if extra:
                raise ValueError(
                    f'paramwise_cfg.custom_keys[{key!r}]: {extra} not '
                    'supported with layer-wise lr decay (only decay_mult)')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_wd is None:
            # mmpretrain's constructor reads every group's weight_decay
            raise ValueError('layer-wise lr decay: set optimizer.weight_decay '
                             'explicitly (0 for none)')

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs):
        if (prefix == '' and get_layer_depth is None
                and not hasattr(module, 'get_layer_depth')):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'layer-wise lr decay: {type(module).__name__} and its '
                    f'backbone ({type(backbone).__name__}) have no '
                    'get_layer_depth(); use a backbone that defines it (all '
                    'mmext backbones do)')
            get_layer_depth = partial(backbone.get_layer_depth,
                                      prefix='backbone.')
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
