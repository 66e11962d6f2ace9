#!/usr/bin/env python
"""Speed-up and memory ratio of mmext over the official Dual-ViT, per arch,
mode and allocator, from the records of ``benchmarks/dualvit/cpu.sh``.

    python benchmarks/dualvit/speedup.py [benchmarks/dualvit/cpu.json]

Writes ``dualvit_speedup.md`` next to the JSON and prints it. The issue's
targets: inference >= 5x and training step >= 3.5x faster, each with at
most half the official peak memory.
"""
import json
import os
import os.path as osp
import sys

TARGETS = {'infer': 5.0, 'train': 3.5}


def table(records) -> str:
    rows = {}
    for r in records:
        who, _, arch = r['name'].partition(' ')
        key = (arch, r['mode'], r['shape'], r.get('allocator', 'default'))
        rows.setdefault(key, {})[who] = r
    lines = [
        '| model | mode | input | allocator | mmext (s) | official (s) | '
        'speed-up (target) | mmext peak (MB) | official peak (MB) | '
        'memory ratio (target <= 0.5) |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for (arch, mode, shape, alloc), pair in sorted(rows.items()):
        if set(pair) != {'mmext', 'official'}:
            continue
        ours, ref = pair['mmext'], pair['official']
        speedup = ref['latency_s'] / ours['latency_s']
        memory = ours['peak_mem_mb'] / ref['peak_mem_mb']
        target = TARGETS.get(mode)
        met = '' if target is None else \
            f" ({target:g}x: {'met' if speedup >= target else 'not met'})"
        lines.append(
            f"| {arch} | {mode} | {shape} | {alloc} | "
            f"{ours['latency_s']:.2f} | {ref['latency_s']:.2f} | "
            f"{speedup:.2f}x{met} | {ours['peak_mem_mb']:.0f} | "
            f"{ref['peak_mem_mb']:.0f} | {memory:.2f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else osp.join(osp.dirname(__file__),
                                         'cpu.json')
    with open(path) as f:
        text = table(json.load(f))
    out = osp.join(osp.dirname(path), 'speedup.md')
    with open(out + '.part', 'w') as f:
        f.write(text)
    os.replace(out + '.part', out)
    print(text, end='')


if __name__ == '__main__':
    main()
