"""Suite-wide fixtures."""
import pytest


@pytest.fixture(autouse=True)
def _keep_mmengine_default_scope():
    """A test that sets mmengine's default scope (``init_default_scope``)
    must not change how a later test resolves unscoped registry names."""
    from mmengine.registry import DefaultScope
    before = list(DefaultScope._instance_dict.items())
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)
