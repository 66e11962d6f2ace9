"""Fixtures of the engine tests."""
import pytest


@pytest.fixture(scope='session')
def small_demo_root(tmp_path_factory):
    """A small demo data set (4 train / 2 val images of each kind)."""
    from mmext.datasets.demo import make_demo_data
    return make_demo_data(
        str(tmp_path_factory.mktemp('engine_demo_data')),
        splits=dict(train=4, val=2))
