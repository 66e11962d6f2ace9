"""Writes a checksum of the model parameters of every rank after training
(to $DIST_PROBE_DIR/rank<N>.json), so a test can check that DDP kept the
replicas identical while each rank trained on different images."""
import json
import os
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class ParamChecksumHook(Hook):

    def __init__(self):
        self.images = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        for sample in data_batch['data_samples']:
            self.images.append(osp.basename(sample.img_path))

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        with torch.no_grad():
            total = sum(p.double().sum().item() for p in model.parameters())
            norm = sum(p.double().abs().sum().item()
                       for p in model.parameters())
        path = osp.join(os.environ['DIST_PROBE_DIR'],
                        f'rank{runner.rank}.json')
        with open(path, 'w') as f:
            json.dump(
                dict(sum=total, abs_sum=norm, images=self.images,
                     world_size=runner.world_size), f)
