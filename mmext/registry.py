"""mmext's registries (scope ``mmext``): only those that hold something.

Each is a child of mmengine's root registry, so ``type='mmext.Name'``
resolves from mmdet, mmseg and mmpretrain configs alike; ``locations`` makes
the first lookup import the modules that register the classes.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

#: backbones, heads, necks, model wrappers and test-time-augmentation models
MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmext',
    locations=['mmext.models'])
#: optimizer-wrapper constructors (layer-wise lr decay)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmext',
    locations=['mmext.engine.optim'])
#: optimizer wrappers (mixed precision on every device)
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope='mmext',
    locations=['mmext.engine.amp'])
#: training hooks
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmext', locations=['mmext.engine'])
