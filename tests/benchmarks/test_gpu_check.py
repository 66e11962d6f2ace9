"""benchmarks/gpu/check.sh / check.py work up to their CUDA calls: the
script's CPU dry run on one family, and the one line without a GPU."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'benchmarks', 'gpu'))
import check  # noqa: E402


def test_dry_run(tmp_path, capsys):
    out = str(tmp_path / 'check.json')
    code = check.main([
        '--device', 'cpu', '--dry-run', '--out', out, '--families',
        'ShuffleViT', '--timed', 'mmdet_swin_t', '--test-paths',
        'tests/ops/test_elsa_op.py'
    ])
    with open(out) as f:
        record = json.load(f)
    assert code == 0, json.dumps(record, indent=1)[-3000:]
    assert record['dry_run'] and record['ok']
    steps = record['steps']
    assert list(steps) == list(check.STEPS)
    # the CUDA-only test of that file is what pytest -m cuda selects
    assert steps['cuda_tests']['collected'] == [
        'tests/ops/test_elsa_op.py::test_carafe_matches_pytorch_on_cuda'
        f'[shape{i}]' for i in range(2)
    ]
    assert steps['elsa_carafe']['worst_rel_err'] < 1e-2
    runs = steps['amp_training']['runs']
    assert [(r['family'], r['task'])
            for r in runs] == [('ShuffleViT', 'det'), ('ShuffleViT', 'seg')]
    assert all(r['autocast_dtype'] == 'torch.bfloat16' for r in runs)
    timing = steps['timing']['rows']
    assert [(r['model'], r['mode']) for r in timing] == [
        ('mmdet_swin_t', 'infer'), ('mmdet_swin_t', 'train')]
    assert all(set(r['median_ms']) == {'fp32', 'amp'} for r in timing)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is here')
def test_without_gpu_one_line_and_exit_0():
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'benchmarks/gpu/check.sh')],
        env=dict(os.environ, PY=sys.executable), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        'gpu check: no GPU (torch.cuda.is_available() is False); nothing '
        'to check'
    ]
