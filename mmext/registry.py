"""mmext's registries (scope ``mmext``).

Each is a child of mmengine's root registry, so ``type='mmext.Name'`` resolves
from mmdet, mmseg and mmpretrain configs alike; ``locations`` makes the first
lookup import the module that registers the class.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmext', locations=['mmext.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmext',
    locations=['mmext.engine'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmext', locations=['mmext.engine'])
DATASETS = Registry(
    'dataset',
    parent=MMENGINE_DATASETS,
    scope='mmext',
    locations=['mmext.datasets'])
TRANSFORMS = Registry(
    'transform',
    parent=MMENGINE_TRANSFORMS,
    scope='mmext',
    locations=['mmext.datasets'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mmext', locations=['mmext.engine'])
