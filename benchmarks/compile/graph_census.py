#!/usr/bin/env python
"""Graph breaks and graphs per family under ``torch.compile``, over input
sizes (graph capture only: dynamo with the 'eager' backend).

    python benchmarks/compile/graph_census.py \
        --out benchmarks/compile/graphs_after.json

For each family (tiny arch of ``tests/families.py``) and mode (inference
under ``no_grad``, A-ViT with token removal, its default; a training
step) one fresh process compiles the model and calls it on
``SIZES`` in turn, the first with height and width marked dynamic
(``--no-dynamic``: nothing marked, torch's automatic dynamic shapes). It
records the graphs compiled after each call, the graph breaks, the guard
failures that caused each recompilation (from dynamo's recompile log) and
the seconds of tracing. Run it on an older checkout (``--repo``) to get
the "before" numbers.
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
from case_runner import (load_results, report, run_case,  # noqa: E402
                         save_results)
#: non-multiples of 32, 16 and 7 among them; all below 128 pixels, where
#: Shuffle Swin's unshifted small maps (pad_small_map=False) stay unshifted
SIZES = [(64, 96), (96, 64), (72, 100), (100, 72)]


class RecompileReasons(logging.Handler):
    """Collects the guard failures dynamo logs when it recompiles."""

    def __init__(self):
        super().__init__()
        self.reasons = []

    def emit(self, record):
        text = record.getMessage()
        if 'triggered by the following guard failure' in text:
            lines = [line.strip() for line in text.splitlines()
                     if line.strip().startswith('- ')]
            self.reasons.append(lines[0][2:300] if lines else text[:300])


def run_worker(spec) -> dict:
    sys.path.insert(0, spec['repo'])
    import torch
    import torch._dynamo
    from torch._dynamo.backends.registry import lookup_backend

    from tests.families import FAMILIES
    torch.set_num_threads(1)
    torch._logging.set_logs(recompiles=True)
    reasons = RecompileReasons()
    logging.getLogger('torch._dynamo').addHandler(reasons)
    family = next(f for f in FAMILIES if f.type == spec['family'])
    train = spec['mode'] == 'train'
    torch.manual_seed(0)
    model = family.build().train(train)
    graphs = []
    eager = lookup_backend('eager')

    def backend(gm, example_inputs):
        graphs.append(len(gm.graph.nodes))
        return eager(gm, example_inputs)

    compiled = torch.compile(model, backend=backend)
    torch._dynamo.utils.counters.clear()
    calls = []
    for i, (h, w) in enumerate(SIZES):
        x = torch.randn(2, 3, h, w, requires_grad=train)
        if spec['dynamic'] and i == 0:
            torch._dynamo.mark_dynamic(x, 2)
            torch._dynamo.mark_dynamic(x, 3)
        start = time.perf_counter()
        with torch.set_grad_enabled(train):
            outs = compiled(x)
        if train:
            sum(o.sum() for o in outs).backward()
        calls.append(dict(size=[h, w], graphs=len(graphs),
                          seconds=round(time.perf_counter() - start, 1)))
    breaks = torch._dynamo.utils.counters['graph_break']
    return dict(family=family.type, mode=spec['mode'],
                dynamic=spec['dynamic'], calls=calls, graphs=len(graphs),
                graph_breaks=sum(breaks.values()),
                break_reasons=sorted({r.splitlines()[0][:200]
                                      for r in breaks}),
                recompile_reasons=reasons.reasons,
                load=os.getloadavg()[0], torch=torch.__version__)


def markdown(results) -> str:
    lines = ['| family | mode | graphs after each size | breaks | what '
             'recompiled | tracing (s) | load |',
             '|---|---|---|---|---|---|---|']
    for key in sorted(results):
        r = results[key]
        if 'error' in r:
            lines.append(f'| {key} | failed: {r["error"][:150]} |||||')
            continue
        after = ', '.join(f'{"x".join(map(str, c["size"]))}: {c["graphs"]}'
                          for c in r['calls'])
        why = '; '.join(sorted(set(r['recompile_reasons'])))[:300]
        seconds = sum(c['seconds'] for c in r['calls'])
        lines.append(f'| {r["family"]} | {r["mode"]} | {after} | '
                     f'{r["graph_breaks"]} | {why.replace("|", "/")} | '
                     f'{seconds:.0f} | {r["load"]:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--repo', default=REPO,
                        help='checkout whose mmext and tests/families.py '
                        'are measured (default: this one)')
    parser.add_argument('--families', nargs='+')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'])
    parser.add_argument('--no-dynamic', dest='dynamic',
                        action='store_false')
    parser.add_argument('--timeout', type=float, default=1800,
                        help='seconds per family and mode')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        report(run_worker(json.loads(args.worker)))
        return

    sys.path.insert(0, REPO)
    results = load_results(args.out)
    repo = osp.abspath(args.repo)
    env = dict(os.environ, PYTHONPATH=repo)
    names = args.families or ['DualViT', 'ELSASwin', 'AViT', 'ShuffleSwin',
                              'ShuffleViT']
    for mode in args.modes:
        for name in names:
            spec = dict(family=name, mode=mode, dynamic=args.dynamic,
                        repo=repo)
            key = f'{name} {mode}'
            results[key] = run_case(__file__, args.out, spec, cwd=repo,
                                    env=env, timeout=args.timeout)
            print(key, json.dumps(results[key])[:300], flush=True)
            save_results(args.out, results, markdown)


if __name__ == '__main__':
    main()
