"""mmext.apis.model_spec and mmext.apis.benchmarking (tools/benchmark.py's
library side)."""
import argparse
import json
import os.path as osp

import pytest

from mmext.apis import benchmarking, model_spec

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = ("dict(type='mmext.DualViT', arch=dict(stem_width=8, "
        "embed_dims=[16, 16, 32, 32], num_heads=[1, 1, 2, 2], "
        "mlp_ratios=[2, 2, 2, 2], depths=[1, 1, 1, 1]))")


def _record(name, latency, allocator='default'):
    return dict(name=name,
                mode='infer',
                shape='1x3x64x64',
                device='cpu',
                allocator=allocator,
                threads=2,
                latency_s=latency,
                peak_mem_mb=100.,
                peak_delta_mb=10.,
                params=1e6,
                load_avg_1min=0.5)


def test_config_file_drops_pretrained_init(capsys):
    args = argparse.Namespace(model=osp.join(
        REPO, 'configs/detection/dualvit_s_maskrcnn_1x.py'),
                              cfg_key='model.backbone',
                              arch=None,
                              set=['drop_path_rate=0.0'])
    cfg = model_spec.model_cfg(args)
    assert cfg['type'] == 'mmext.DualViT' and 'init_cfg' not in cfg
    assert cfg['drop_path_rate'] == 0.0
    assert 'ignoring model.backbone.init_cfg' in capsys.readouterr().err


def test_merge_keeps_allocators_apart_and_best(tmp_path):
    path = str(tmp_path / 'r.json')
    benchmarking.merge_results(
        path,
        [_record('m', 2.0), _record('m', 3.0, 'retain')])
    benchmarking.merge_results(
        path,
        [_record('m', 2.5), _record('m', 1.0, 'retain')], keep_best=True)
    with open(path) as f:
        got = {r['allocator']: r['latency_s'] for r in json.load(f)}
    assert got == {'default': 2.0, 'retain': 1.0}
    table = (tmp_path / 'r.md').read_text()
    assert '| m | infer | 1x3x64x64 | cpu | retain | 2 | 1.000 |' in table
    assert not (tmp_path / 'r.json.part').exists()


@pytest.mark.parametrize('allocator', ['default', 'retain'])
def test_worker_runs_under_the_requested_allocator(allocator):
    spec = dict(cfg=model_spec.literal(TINY),
                factory=None,
                mode='train',
                shape=[1, 3, 64, 64],
                device='cpu',
                threads=1,
                allocator=allocator,
                warmup=0,
                iters=1)
    result = benchmarking.measure(spec, timeout=300)
    assert result['params'] == _tiny_params()
    assert result['latency_s'] > 0 and result['peak_mem_mb'] > 0
    expected = benchmarking.RETAIN_MALLOC_ENV if allocator == 'retain' else {}
    assert result['malloc_env'] == expected


def _tiny_params():
    model = model_spec.build_model(dict(cfg=model_spec.literal(TINY)))
    return sum(p.numel() for p in model.parameters())
