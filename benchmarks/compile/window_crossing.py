#!/usr/bin/env python
"""Graphs of the Swin-like families (tiny archs) over growing input sizes,
the first with height and width marked dynamic (dynamo graph capture,
'eager' backend, inference).

    python benchmarks/compile/window_crossing.py \
        --out benchmarks/compile/window_crossing.json

A stage whose map fits in one attention window has a window count of 1,
which torch specialises; the first input that gives that stage two
windows compiles a new graph (once per stage). The sizes run from below
that point to detection sizes; each row records the graphs after each
size, the recompile reasons and the largest difference to eager.
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
SIZES = [(64, 96), (96, 64), (160, 224), (288, 320), (512, 544), (600, 704),
         (800, 1216)]
FAMILIES = ['ShuffleSwin', 'ELSASwin']


class GuardLog(logging.Handler):
    """Collects dynamo's recompile messages (their guard-failure lines)."""

    def __init__(self):
        super().__init__()
        self.reasons = []

    def emit(self, record):
        for line in record.getMessage().splitlines():
            if line.strip().startswith('- '):
                self.reasons.append(line.strip()[2:].split('  #')[0])


def run(family_type: str) -> dict:
    import torch
    import torch._dynamo

    from mmext.engine.compile import GraphCounter, graph_break_count
    from tests.families import FAMILIES as ALL
    torch._logging.set_logs(recompiles=True)
    guards = GuardLog()
    logging.getLogger('torch._dynamo').addHandler(guards)
    family = next(f for f in ALL if f.type == family_type)
    torch.manual_seed(0)
    model = family.build().eval()
    counter = GraphCounter('eager')
    compiled = torch.compile(model, backend=counter)
    calls = []
    with torch.no_grad():
        for i, (h, w) in enumerate(SIZES):
            x = torch.randn(1, 3, h, w)
            if i == 0:
                torch._dynamo.mark_dynamic(x, 2)
                torch._dynamo.mark_dynamic(x, 3)
            diff = max((a - b).abs().max().item()
                       for a, b in zip(compiled(x), model(x)))
            calls.append(dict(size=[h, w], graphs=counter.count,
                              max_abs_diff=diff))
    return dict(family=family_type, calls=calls,
                graph_breaks=graph_break_count(),
                recompile_reasons=guards.reasons,
                torch=torch.__version__, load=os.getloadavg()[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    from mmext.utils.fileio import atomic_write
    results = [run(name) for name in FAMILIES]
    with atomic_write(args.out, 'w', force=True) as f:
        json.dump(results, f, indent=1)
    lines = ['| family | graphs after each size | breaks | load |',
             '|---|---|---|---|']
    for r in results:
        graphs = ', '.join(f'{c["size"][0]}x{c["size"][1]}: {c["graphs"]}'
                           for c in r['calls'])
        lines.append(f'| {r["family"]} | {graphs} | {r["graph_breaks"]} '
                     f'| {r["load"]:.1f} |')
    with atomic_write(osp.splitext(args.out)[0] + '.md', 'w',
                      force=True) as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
