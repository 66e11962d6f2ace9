#!/usr/bin/env python
"""Table of benchmarks/shuffle/round*.json (written by run.sh): latency per
round and model, and the ratios of Shuffle Swin-XTi to the two others within
each round (the VM drifts between rounds, not within a pair of neighbouring
measurements), plus the MAC counts. Writes benchmarks/shuffle/summary.md."""
import glob
import json
import os.path as osp
import re
import statistics

HERE = osp.dirname(osp.abspath(__file__))
SHUFFLE, VANILLA, SWIN_T = 'shuffle_swin_xtiny', 'swin_xtiny_vanilla', 'swin_t'


def main():
    rounds = {}
    for path in sorted(glob.glob(osp.join(HERE, 'round*.json'))):
        n = int(re.search(r'round(\d+)', path).group(1))
        with open(path) as f:
            rounds[n] = {(r['name'], r['mode']): r for r in json.load(f)}
    lines = [
        '| mode | input | round | Shuffle Swin-XTi (s) | vanilla Swin-XTi (s)'
        ' | Swin-T (s) | shuffle / vanilla | shuffle / Swin-T | peak MB '
        '(shuffle / vanilla / Swin-T) | load (1 min) |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    ratios = {}
    for mode in ('infer', 'train'):
        for n, recs in sorted(rounds.items()):
            r = [recs.get((m, mode)) for m in (SHUFFLE, VANILLA, SWIN_T)]
            if None in r:
                continue
            lat = [x['latency_s'] for x in r]
            rv, rt = lat[0] / lat[1], lat[0] / lat[2]
            ratios.setdefault(mode, []).append((rv, rt))
            loads = '/'.join(f"{x['load_avg_1min']:.1f}" for x in r)
            peaks = ' / '.join(f"{x['peak_mem_mb']:.0f}" for x in r)
            lines.append(
                f"| {mode} | {r[0]['shape']} | {n} | {lat[0]:.3f} | "
                f'{lat[1]:.3f} | {lat[2]:.3f} | {rv:.2f} | {rt:.2f} | '
                f'{peaks} | {loads} |')
    lines.append('')
    for mode, rs in ratios.items():
        lines.append(
            f'- {mode}: median over rounds of shuffle / vanilla = '
            f'{statistics.median(r[0] for r in rs):.2f}, shuffle / Swin-T = '
            f'{statistics.median(r[1] for r in rs):.2f}')
    for mode in ('infer', 'train'):
        path = osp.join(HERE, f'interleaved_{mode}.json')
        if not osp.exists(path):
            continue
        with open(path) as f:
            r = json.load(f)
        if mode == 'infer':
            lines += ['', '| interleaved (one process) | input | rounds | '
                      'Shuffle Swin-XTi (s) | vanilla Swin-XTi (s) | Swin-T '
                      '(s) | shuffle / vanilla | shuffle / Swin-T | threads '
                      '| load (1 min) |',
                      '|---|---|---|---|---|---|---|---|---|---|']
        for kind in ('cpu', 'wall'):
            t = r[f'median_{kind}_s']
            q = r['median_cpu_ratio_shuffle_to' if kind == 'cpu' else
                  'median_ratio_shuffle_to']
            lines.append(
                f"| {mode} ({kind} time) | {'x'.join(map(str, r['shape']))} "
                f"| {r['rounds']} | {t[SHUFFLE]:.3f} | {t[VANILLA]:.3f} | "
                f'{t[SWIN_T]:.3f} | {q[VANILLA]:.2f} | {q[SWIN_T]:.2f} | '
                f"{r['threads']} | {min(r['load_avg_1min']):.1f}-"
                f"{max(r['load_avg_1min']):.1f} |")
    macs = []
    for path in sorted(glob.glob(osp.join(HERE, 'macs_*.json'))):
        with open(path) as f:
            report = json.load(f)
        name = osp.basename(path)[5:-5]
        total = report.get('total_macs', report.get('macs'))
        if total is not None:
            macs.append(f'| {name} | {total / 1e9:.2f} |')
    if macs:
        lines += ['', '| model_input | GMACs |', '|---|---|'] + macs
    with open(osp.join(HERE, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
