#!/usr/bin/env python
"""Shuffle Swin-XTi vs a vanilla Swin-XTi vs Swin-T, interleaved iteration
by iteration in one process (CPU).

``tools/benchmark.py`` (run.sh) gives each measurement a fresh process,
which is right for peak memory, but on a shared VM whose speed drifts
within minutes, measurements a minute apart are not comparable. Here the
three models run one iteration each, in a rotating order, for ``--rounds``
rounds; each round gives the ratios of the shuffle model's time to the
two others', taken seconds apart. Reported: median wall time and process
CPU time per model, and the medians of the per-round ratios of both. With
one thread (the default) the process CPU time hardly depends on what else
the machine runs (a descheduled thread accrues none), while the wall time
of one iteration varied 10x on the 2-core development VM shared with other
jobs: compare CPU times there. The 1-minute load average is recorded at
every round.

    python benchmarks/shuffle/interleaved.py --mode infer --rounds 5 \
        --out benchmarks/shuffle/interleaved_infer.json
"""
import argparse
import json
import os
import statistics
import time

import torch

MODELS = {
    'shuffle_swin_xtiny':
    dict(type='mmext.ShuffleSwin', arch='xtiny', drop_path_rate=0.1),
    'swin_xtiny_vanilla':
    dict(type='mmdet.SwinTransformer', embed_dims=48, depths=[2, 2, 5, 2],
         num_heads=[3, 6, 12, 24], drop_path_rate=0.1),
    'swin_t':
    dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
         num_heads=[3, 6, 12, 24], drop_path_rate=0.1),
}


def build(cfg):
    import mmext.models  # noqa: F401
    from mmengine.registry import MODELS as REGISTRY
    return REGISTRY.build(cfg)  # construction weights: timing only


def step(model, x, mode):
    if mode == 'infer':
        with torch.inference_mode():
            model(x)
        return
    outs = model(x)
    sum(o.mean() for o in outs).backward()
    model.zero_grad(set_to_none=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mode', choices=['infer', 'train'], required=True)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (1, 3, 800, 1344) if args.mode == 'infer' else (2, 3, 512, 512)
    x = torch.randn(shape)
    names = list(MODELS)
    models = {n: build(c) for n, c in MODELS.items()}
    for m in models.values():
        m.train(args.mode == 'train')
        step(m, x, args.mode)  # warm-up
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    loads, ratios, cpu_ratios = [], [], []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        order = names[r % 3:] + names[:r % 3]
        for n in order:
            t, c = time.perf_counter(), time.process_time()
            step(models[n], x, args.mode)
            wall[n].append(time.perf_counter() - t)
            cpu[n].append(time.process_time() - c)
        ratios.append([wall[names[0]][-1] / wall[n][-1] for n in names[1:]])
        cpu_ratios.append([cpu[names[0]][-1] / cpu[n][-1] for n in names[1:]])
        print(f'round {r}: ' + ', '.join(
            f'{n} {wall[n][-1]:.2f} s' for n in names) +
              f' (load {loads[-1]:.1f})', flush=True)
    report = dict(
        mode=args.mode,
        shape=list(shape),
        threads=args.threads,
        rounds=args.rounds,
        load_avg_1min=loads,
        wall_s={n: wall[n] for n in names},
        cpu_s={n: cpu[n] for n in names},
        median_wall_s={n: statistics.median(wall[n]) for n in names},
        median_cpu_s={n: statistics.median(cpu[n]) for n in names},
        median_ratio_shuffle_to={
            n: statistics.median(r[i] for r in ratios)
            for i, n in enumerate(names[1:])
        },
        median_cpu_ratio_shuffle_to={
            n: statistics.median(r[i] for r in cpu_ratios)
            for i, n in enumerate(names[1:])
        },
        torch=torch.__version__)
    print(json.dumps({k: report[k] for k in (
        'median_wall_s', 'median_cpu_s', 'median_ratio_shuffle_to',
        'median_cpu_ratio_shuffle_to')},
        indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)


if __name__ == '__main__':
    main()
