#!/usr/bin/env python
"""mmengine's own ``compile`` key (the whole ``train_step``) vs our
``compile_backbone`` on the demo Mask R-CNN (tiny Dual-ViT), CPU.

    python benchmarks/compile/whole_model.py \
        --out benchmarks/compile/whole_model.json [--backend inductor]

For each setting one fresh process trains a few iterations of the demo
detector (``configs/demo/dualvit_tiny_maskrcnn_demo_12e.py`` on the
generated demo data, 128 px, batch 4) through mmext's runner, then runs
its validation, and records whether it ran, the graphs compiled and the
graph breaks dynamo met (with the most frequent reasons), the seconds of
the first iteration (compilation) and the median of the others, and
whether validation ran compiled code at all (mmengine compiles only
``train_step``). ``--backend eager`` measures graph capture only (fast);
``inductor`` the real thing.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from case_runner import (load_results, report, run_case,  # noqa: E402
                         save_results)
SETTINGS = ('eager', 'mmengine_compile', 'compile_backbone')


def make_cfg(setting, backend, data_root, work_dir, iters):
    """The demo detector's config for ``setting``; ``backend`` is handed to
    ``torch.compile``."""
    from mmengine.config import Config

    from mmext.apis.launch import adapt_cfg_to_device
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py'))
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = osp.join(data_root, 'coco') + '/'
        loader.num_workers = 0
        loader.persistent_workers = False
        for t in loader.dataset.pipeline:
            if t.get('type') == 'Resize':
                t['scale'] = (128, 128)
    for split in ('val', 'test'):
        cfg[f'{split}_evaluator'].ann_file = osp.join(
            data_root, 'coco/annotations/instances_val.json')
    cfg.train_dataloader.batch_size = 4
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10**6)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    adapt_cfg_to_device(cfg)  # e.g. the config's AMP falls back on a CPU
    if setting == 'mmengine_compile':
        cfg.compile = dict(backend=backend)
    elif setting == 'compile_backbone':
        cfg.compile_backbone = dict(backend=backend)
    return cfg


class IterTimer:
    """Seconds of every training iteration and every validation batch."""

    def __init__(self):
        self.train, self.val, self._start = [], [], None

    def hook(self):
        from mmengine.hooks import Hook
        timer = self

        class _Hook(Hook):
            priority = 'LOWEST'

            def before_train_iter(self, runner, batch_idx, data_batch=None):
                timer._start = time.perf_counter()

            def after_train_iter(self, runner, batch_idx, data_batch=None,
                                 outputs=None):
                timer.train.append(time.perf_counter() - timer._start)

            def before_val_iter(self, runner, batch_idx, data_batch=None):
                timer._start = time.perf_counter()

            def after_val_iter(self, runner, batch_idx, data_batch=None,
                               outputs=None):
                timer.val.append(time.perf_counter() - timer._start)

        return _Hook()


def run_worker(spec) -> dict:
    import collections

    import torch
    import torch._dynamo

    import mmext.models  # noqa: F401
    from mmext.engine import MMExtRunner
    from mmext.engine.compile import GraphCounter, graph_break_count
    torch.set_num_threads(1)
    backend = GraphCounter(spec['backend'])
    # by name: the runner prints the config, which must stay plain data
    torch._dynamo.register_backend(backend, name='counted')
    cfg = make_cfg(spec['setting'], 'counted', spec['data_root'],
                   spec['work_dir'], spec['iters'])
    runner = MMExtRunner.from_cfg(cfg)
    timer = IterTimer()
    runner.register_hook(timer.hook())
    torch._dynamo.utils.counters.clear()
    error = None
    try:
        runner.train()
    except Exception as err:  # noqa: BLE001 - the finding is the failure
        error = f'{type(err).__name__}: {str(err).splitlines()[0][:300]}'
    graphs_after_train = backend.count
    reasons = collections.Counter()
    for reason, count in torch._dynamo.utils.counters['graph_break'].items():
        reasons[reason.splitlines()[0][:160]] += count
    return dict(
        setting=spec['setting'], backend=spec['backend'], error=error,
        train_iters=len(timer.train),
        first_iter_s=timer.train[0] if timer.train else None,
        median_iter_s=statistics.median(timer.train[1:])
        if len(timer.train) > 1 else None,
        val_batches=len(timer.val),
        median_val_batch_s=statistics.median(timer.val)
        if timer.val else None,
        graphs=graphs_after_train,
        graph_breaks=graph_break_count(),
        top_break_reasons=reasons.most_common(8),
        load=os.getloadavg()[0],
        torch=torch.__version__)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--backend', default='eager',
                        choices=['eager', 'aot_eager', 'inductor'])
    parser.add_argument('--iters', type=int, default=4)
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        report(run_worker(json.loads(args.worker)))
        return

    from mmext.datasets.demo import make_demo_data
    results = load_results(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        data_root = make_demo_data(osp.join(tmp, 'data'),
                                   splits=dict(train=16, val=4))
        for setting in args.settings:
            spec = dict(setting=setting, backend=args.backend,
                        data_root=data_root, iters=args.iters,
                        work_dir=osp.join(tmp, setting))
            key = f'{setting} ({args.backend})'
            results[key] = run_case(__file__, args.out, spec, cwd=REPO)
            print(key, json.dumps(results[key])[:400], flush=True)
            save_results(args.out, results)


if __name__ == '__main__':
    main()
