"""mmengine save/resume under torch's weights_only default, and refusal of
pickles outside the allow-list."""
import copy
import os
import pickle
import pickletools
import zipfile

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner

import mmext  # noqa: F401  (registers the allow-list)
from mmext.utils.checkpoint import (CorruptCheckpointError,
                                    UntrustedCheckpointError,
                                    load_checkpoint_file, state_dict_from)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets, mode='tensor'):
        preds = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((preds - targets)**2).mean())
        return preds


class ToyDataset(torch.utils.data.Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        x = torch.randn(4, generator=gen)
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


class RecordResumeState(Hook):
    """Captures what the runner holds right after resuming."""

    def before_train(self, runner):
        self.iter = runner.iter
        self.optim_state = copy.deepcopy(
            runner.optim_wrapper.optimizer.state_dict())


def _runner(work_dir, max_iters, hooks=(), resume=False, load_from=None):
    return Runner(model=ToyModel(),
                  work_dir=str(work_dir),
                  train_dataloader=dict(
                      dataset=ToyDataset(),
                      sampler=dict(type='DefaultSampler', shuffle=True),
                      collate_fn=dict(type='default_collate'),
                      batch_size=4,
                      num_workers=0),
                  optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                     interval=2,
                                                     by_epoch=False),
                                     logger=dict(type='LoggerHook',
                                                 interval=1)),
                  custom_hooks=list(hooks),
                  resume=resume,
                  load_from=load_from,
                  randomness=dict(seed=0),
                  default_scope='mmengine')


def test_train_save_resume(tmp_path):
    first = _runner(tmp_path, max_iters=4)
    first.train()
    ckpt = tmp_path / 'iter_4.pth'
    assert ckpt.exists()

    # The checkpoint really holds the objects that need the allow-list...
    with zipfile.ZipFile(ckpt) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith('data.pkl'))
        ops = [arg for _, arg, _ in pickletools.genops(archive.read(pkl))]
    assert 'mmengine.logging.history_buffer HistoryBuffer' in ops
    assert '__builtin__ getattr' in ops
    # ...and loads with weights_only=True, torch's default.
    saved = torch.load(ckpt, weights_only=True)
    assert saved['meta']['iter'] == 4

    recorder = RecordResumeState()
    second = _runner(tmp_path,
                     max_iters=6,
                     hooks=[recorder],
                     resume=True,
                     load_from=str(ckpt))
    second.train()
    assert recorder.iter == 4
    assert second.iter == 6
    saved_state = saved['optimizer']['state']
    resumed_state = recorder.optim_state['state']
    assert saved_state.keys() == resumed_state.keys()
    for key, state in saved_state.items():
        assert int(resumed_state[key]['step']) == int(state['step']) == 4
        torch.testing.assert_close(resumed_state[key]['exp_avg'],
                                   state['exp_avg'])
        torch.testing.assert_close(resumed_state[key]['exp_avg_sq'],
                                   state['exp_avg_sq'])
    # Message hub (HistoryBuffer) came back too: the loss history continues.
    hub = second.message_hub
    assert len(hub.get_scalar('train/loss').data[0]) == 6


class _Exploit:

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target, )


def test_untrusted_pickle_is_refused(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Exploit(marker)}, path)

    with pytest.raises(UntrustedCheckpointError,
                       match=r'posix\.mkdir|os\.mkdir'):
        load_checkpoint_file(str(path))
    # The same refusal through mmengine's loader (what Runner.resume uses).
    with pytest.raises(UntrustedCheckpointError, match='allow-list'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert isinstance(UntrustedCheckpointError('x'), pickle.UnpicklingError)
    assert not os.path.exists(marker)


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'walk.pth'
    # getattr(np.ndarray, '__reduce__') is the first step of an attribute walk.
    torch.save({'x': _GetattrWalk()}, path)
    with pytest.raises(UntrustedCheckpointError, match='getattr'):
        load_checkpoint_file(str(path))


class _GetattrWalk:

    def __reduce__(self):
        import numpy as np
        return getattr, (np.ndarray, '__reduce__')


def test_truncated_checkpoint_gets_clear_error(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.ones(1000)}}, good)
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CorruptCheckpointError, match='truncated'):
        load_checkpoint_file(str(bad))


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        load_checkpoint_file(str(tmp_path / 'nothere.pth'))


@pytest.mark.parametrize('wrapper',
                         [None, 'state_dict', 'model', 'state_dict_ema'])
def test_state_dict_from_unwraps(wrapper):
    state = {'module.a': torch.zeros(1), 'b': torch.ones(1)}
    ckpt = state if wrapper is None else {wrapper: state, 'epoch': 3}
    assert sorted(state_dict_from(ckpt)) == ['a', 'b']
