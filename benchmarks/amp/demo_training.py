#!/usr/bin/env python
"""The demo Mask R-CNN trained on a CPU in float32 and with AMP (bfloat16
autocast), each checkpoint evaluated in float32 by ``tools/test.py``.

    python benchmarks/amp/demo_training.py \
        --out benchmarks/amp/demo_training.json [--epochs 12]

Both runs use ``configs/demo/dualvit_tiny_maskrcnn_demo_12e.py`` on the
generated demo data (``--data``, made if missing) with the same seed, so
they see the same initial weights and batches; the float32 run sets
``optim_wrapper.dtype=float32``, the AMP run is the config as it is (its
``AmpOptimWrapper`` is bfloat16 autocast on a CPU). Recorded: the training
loss of every logged iteration (mmengine's ``scalars.json``), its mean per
epoch, the wall time per iteration with the load average before and after
each run (the runs follow one another, they are not interleaved: this is a
learning comparison, not a speed benchmark; see ``cpu_speed.py``), and the
COCO box / mask AP of both checkpoints.
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
CONFIG = osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py')
PRECISIONS = {'fp32': ['optim_wrapper.dtype=float32'], 'bf16': []}


def _run(cmd, env):
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{proc.stdout[-4000:]}')
    return proc.stdout


def _scalars(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    rows = []
    for line in open(files[-1]):
        row = json.loads(line)
        if 'loss' in row:
            rows.append(row)
    return rows


def _test_metrics(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', 'test_metrics.json')),
                   key=osp.getmtime)
    with open(files[-1]) as f:
        return json.load(f)['metrics']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--data', default=osp.join(REPO, 'data/demo'))
    parser.add_argument('--work-dir',
                        default=osp.join(REPO, 'work_dirs/amp_demo'))
    args = parser.parse_args()
    from mmext.datasets.demo import make_demo_data
    from mmext.utils.fileio import atomic_write
    make_demo_data(args.data)
    env = dict(os.environ, MMEXT_DEMO_DATA=args.data,
               PYTHONPATH=os.pathsep.join(
                   [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    env.setdefault('OMP_NUM_THREADS', '1')
    iters_per_epoch = None
    results = {}
    for name, options in PRECISIONS.items():
        work = osp.join(args.work_dir, name)
        load_before = os.getloadavg()[0]
        start = time.time()
        log = _run([
            sys.executable, 'tools/train.py', CONFIG, '--work-dir', work,
            '--cfg-options', f'train_cfg.max_epochs={args.epochs}',
            'train_cfg.val_begin=1000000', 'default_hooks.logger.interval=4',
            *options
        ], env)
        wall = time.time() - start
        rows = _scalars(work)
        iters_per_epoch = iters_per_epoch or max(
            r['iter'] for r in rows) // args.epochs
        per_epoch = {}
        for r in rows:
            per_epoch.setdefault((r['iter'] - 1) // iters_per_epoch + 1,
                                 []).append(r['loss'])
        with open(osp.join(work, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        _run([sys.executable, 'tools/test.py', CONFIG, ckpt, '--work-dir',
              work], env)
        metrics = _test_metrics(work)
        results[name] = dict(
            amp_log=[ln for ln in log.splitlines()
                     if 'mixed precision' in ln or 'float32' in ln][:2],
            losses=[(r['iter'], r['loss']) for r in rows],
            epoch_mean_loss={e: statistics.mean(v)
                             for e, v in sorted(per_epoch.items())},
            s_per_iter=statistics.median(r['time'] for r in rows),
            train_wall_s=wall,
            load_avg_before=load_before,
            load_avg_after=os.getloadavg()[0],
            test_metrics={k: v for k, v in metrics.items()
                          if k.startswith('coco/') and 'mAP' in k},
            checkpoint=osp.relpath(ckpt, REPO))
        print(name, json.dumps(results[name]['epoch_mean_loss']), flush=True)
    record = dict(config=osp.relpath(CONFIG, REPO), epochs=args.epochs,
                  threads=env['OMP_NUM_THREADS'], cpu=_cpu(), runs=results)
    with atomic_write(args.out, 'w', force=True) as f:
        json.dump(record, f, indent=1)
    with atomic_write(osp.splitext(args.out)[0] + '.md', 'w',
                      force=True) as f:
        f.write(_markdown(record))


def _cpu():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return ''


def _markdown(record):
    runs = record['runs']
    epochs = sorted(runs['fp32']['epoch_mean_loss'], key=int)
    lines = [
        f"Demo Mask R-CNN ({record['config']}), {record['epochs']} epochs "
        f"on a CPU ({record['cpu']}, {record['threads']} thread(s)); "
        'made by benchmarks/amp/demo_training.py\n',
        '| epoch | mean loss fp32 | mean loss bf16 (AMP) |', '|---|---|---|'
    ]
    for e in epochs:
        lines.append(f"| {e} | {runs['fp32']['epoch_mean_loss'][e]:.4f} | "
                     f"{runs['bf16']['epoch_mean_loss'][e]:.4f} |")
    lines += ['', '| run | bbox mAP | bbox mAP_50 | segm mAP | segm mAP_50 | '
              's / iter (median) | load before / after |',
              '|---|---|---|---|---|---|---|']
    for name, r in runs.items():
        m = r['test_metrics']
        lines.append(
            f"| {name} | {m.get('coco/bbox_mAP', float('nan')):.3f} | "
            f"{m.get('coco/bbox_mAP_50', float('nan')):.3f} | "
            f"{m.get('coco/segm_mAP', float('nan')):.3f} | "
            f"{m.get('coco/segm_mAP_50', float('nan')):.3f} | "
            f"{r['s_per_iter']:.2f} | {r['load_avg_before']:.1f} / "
            f"{r['load_avg_after']:.1f} |")
    lines.append('\nBoth checkpoints are evaluated in float32 (tools/test.py '
                 'builds the model in float32; the AMP run keeps float32 '
                 'weights).')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
