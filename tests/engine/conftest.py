"""Fixtures of the engine tests: the pipeline tests' helpers (tiny demo
configs, running the tools) and a small demo data set."""
import os.path as osp
import sys

import pytest

sys.path.insert(
    0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'pipeline'))


@pytest.fixture(scope='session')
def small_demo_root(tmp_path_factory):
    from mmext.datasets.demo import make_demo_data
    return make_demo_data(
        str(tmp_path_factory.mktemp('engine_demo_data')),
        splits=dict(train=4, val=2))
