"""Fixtures of the deploy tests: a tiny UperNet on a few demo images."""
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_DEMO = osp.join(REPO, 'configs/demo/dualvit_tiny_upernet_demo_400i.py')
#: the demo images (192-256 px) at short side 96
TEST_SCALE = (512, 96)


@pytest.fixture(scope='session')
def seg_demo(tmp_path_factory):
    """``(config path, checkpoint path)``: the demo UperNet (tiny Dual-ViT)
    with random weights, on 4 demo validation images at short side 96."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    from mmext.datasets.demo import make_demo_data
    work = tmp_path_factory.mktemp('deploy_seg')
    root = make_demo_data(str(work / 'data'), splits=dict(train=1, val=4))
    cfg = Config.fromfile(SEG_DEMO)
    for split in ('val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = osp.join(root, 'ade')
        loader.num_workers = 0
        loader.persistent_workers = False
        for step in loader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = TEST_SCALE
    config = str(work / 'seg.py')
    cfg.dump(config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    checkpoint = str(work / 'seg.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    return config, checkpoint
