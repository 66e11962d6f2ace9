"""Fixtures of the apis tests."""
import functools

import pytest


@pytest.fixture(scope='session')
def infer_demo_root(tmp_path_factory):
    """A small demo data set (1 train / 2 val images of each kind)."""
    from mmext.datasets.demo import make_demo_data
    return make_demo_data(
        str(tmp_path_factory.mktemp('infer_demo_data')),
        splits=dict(train=1, val=2))


@pytest.fixture(scope='session', autouse=True)
def _read_metafiles_once():
    """mmengine resolves every ``mmdet::`` / ``mmseg::`` base by parsing
    all of the package's ~400 metafile.yml files (about 0.5 s per base, 90%
    of loading one of our configs). The files do not change during a run,
    so each is parsed once here; what is read from them is unchanged."""
    from mmengine.config import utils
    original = utils.load
    utils.load = functools.lru_cache(maxsize=None)(original)
    yield
    utils.load = original
