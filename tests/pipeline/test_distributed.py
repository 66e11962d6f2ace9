"""Two CPU processes over gloo through tools/dist_train.sh (torchrun) and
tools/dist_test.sh."""
import json
import os.path as osp
import socket

from tests.pipeline.pipeline_utils import REPO, run, tiny_seg_cfg


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def test_dist_train_and_test_two_processes_gloo(demo_root, tmp_path):
    work = str(tmp_path / 'dist')
    cfg = tiny_seg_cfg(
        demo_root,
        work,
        iters=2,
        custom_imports=dict(
            imports=['mmext.models', 'dist_probe'],
            allow_failed_imports=False),
        custom_hooks=[dict(type='ParamChecksumHook')])
    probe = tmp_path / 'probe'
    probe.mkdir()
    env = dict(
        PORT=_free_port(), OMP_NUM_THREADS='1', DIST_PROBE_DIR=str(probe))
    _, out = run(['bash', osp.join(REPO, 'tools/dist_train.sh'), cfg, '2',
                  '--work-dir', work, '--cfg-options',
                  'train_cfg.val_begin=100'], env=env)
    assert 'CPU distributed run' in out and 'world size 2' in out
    assert 'SyncBN -> BN' in out
    assert 'Iter(train) [2/2]' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    # each rank trained on its own images, and DDP kept the replicas equal
    ranks = [json.loads((probe / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert all(r['world_size'] == 2 for r in ranks)
    first = [set(r['images'][:4]) for r in ranks]  # one batch per rank
    assert len(first[0]) == 4 and not first[0] & first[1]
    assert ranks[0]['sum'] == ranks[1]['sum']
    assert ranks[0]['abs_sum'] == ranks[1]['abs_sum']

    env['PORT'] = _free_port()
    _, out = run(['bash', osp.join(REPO, 'tools/dist_test.sh'), cfg,
                  osp.join(work, 'iter_2.pth'), '2', '--work-dir', work],
                 env=env)
    assert 'test results' in out and 'mIoU' in out
