"""mmext's registries (scope ``mmext``): only those that hold something.

Each is a child of mmengine's root registry, so ``type='mmext.Name'``
resolves from mmdet, mmseg and mmpretrain configs alike; ``locations`` makes
the first lookup import the modules that register the classes.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

#: backbones, heads, necks and model wrappers
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmext', locations=['mmext.models'])
#: training hooks
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmext', locations=['mmext.engine'])
