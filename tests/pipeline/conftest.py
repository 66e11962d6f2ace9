"""Fixtures of the pipeline tests (helpers are in pipeline_utils.py)."""
import pytest


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A small demo data set (8 train / 4 val images of each kind)."""
    from mmext.datasets.demo import make_demo_data
    return make_demo_data(
        str(tmp_path_factory.mktemp('demo_data')),
        splits=dict(train=8, val=4))
