"""``type='mmext.X'`` must resolve from every downstream library's scope."""
import pytest
import torch.nn as nn
from mmengine.registry import DefaultScope

from mmext.registry import MODELS


@MODELS.register_module(force=True)
class RegistryProbe(nn.Module):

    def __init__(self, width=3):
        super().__init__()
        self.width = width


def _downstream_models(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS as registry
    elif scope == 'mmseg':
        from mmseg.registry import MODELS as registry
    else:
        from mmpretrain.registry import MODELS as registry
    return registry


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_mmext_prefix_builds_from_downstream_scope(scope):
    registry = _downstream_models(scope)
    with DefaultScope.overwrite_default_scope(scope):
        module = registry.build(dict(type='mmext.RegistryProbe', width=5))
    assert isinstance(module, RegistryProbe)
    assert module.width == 5


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_unprefixed_name_stays_in_caller_scope(scope):
    # Without the prefix the caller's scope (and its parents) is searched, not
    # mmext's: the prefix is what routes the lookup.
    registry = _downstream_models(scope)
    with DefaultScope.overwrite_default_scope(scope):
        with pytest.raises(KeyError):
            registry.build(dict(type='RegistryProbe'))


def test_registry_scope_and_lazy_location():
    assert MODELS.scope == 'mmext'
    assert MODELS.parent is not None and MODELS.parent.scope == 'mmengine'
    assert 'mmext.models' in MODELS._locations
