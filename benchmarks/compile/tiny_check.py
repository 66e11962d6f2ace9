#!/usr/bin/env python
"""Inductor vs eager for every family's tiny arch (``tests/families.py``):
the errors the compile tests' tolerances come from, graph counts and
compile times.

    python benchmarks/compile/tiny_check.py \
        --out benchmarks/compile/tiny.json

For each family, mode (inference under ``no_grad``; a training step:
forward and backward of a fixed weighted sum of the outputs, gradients of
the input and of every parameter) and graph kind (``static``: compiled for
64x96; ``dynamic``: 64x96 compiled with height and width marked dynamic,
then 96x64 and 72x100 run on the same graph), one fresh process
compiles the model with inductor and reports the largest relative error
``max|compiled - eager| / max|eager|`` over outputs (and gradients), the
graphs compiled, graph breaks and the seconds of each call (the first one
includes the compilation) with the load average. A-ViT's inference runs
the masked form (``token_removal=False``; removal is data-dependent, see
docs/compile.md).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from case_runner import (load_results, report, run_case,  # noqa: E402
                         save_results)
STATIC_SIZES = [(64, 96)]
DYNAMIC_SIZES = [(64, 96), (96, 64), (72, 100)]


def rel_error(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def outputs_and_grads(model, x, weights, train, dynamic):
    import torch
    import torch._dynamo
    x = x.clone().requires_grad_(train)
    if dynamic:
        torch._dynamo.mark_dynamic(x, 2)
        torch._dynamo.mark_dynamic(x, 3)
    with torch.set_grad_enabled(train):
        outs = model(x)
    if not train:
        return list(outs), []
    if not weights:  # the first call draws them, the reference reuses them
        torch.manual_seed(1)
        weights[:] = [torch.randn_like(o) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()
                        if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads


def run_worker(spec) -> dict:
    import torch
    import torch._dynamo

    from mmext.engine.compile import (INDUCTOR_OPTIONS, GraphCounter,
                                      graph_break_count)
    from tests.families import FAMILIES
    torch.set_num_threads(1)
    family = next(f for f in FAMILIES if f.type == spec['family'])
    train = spec['mode'] == 'train'
    kwargs = {} if train or family.type != 'AViT' else dict(
        token_removal=False)
    torch.manual_seed(0)
    model = family.build(**kwargs).train(train)
    counter = GraphCounter('inductor', INDUCTOR_OPTIONS)
    compiled = torch.compile(model, backend=counter)
    dynamic = spec['graph'] == 'dynamic'
    calls = []
    for i, (h, w) in enumerate(DYNAMIC_SIZES if dynamic else STATIC_SIZES):
        x = torch.randn(2, 3, h, w)
        weights = []
        start = time.perf_counter()
        outs, grads = outputs_and_grads(compiled, x, weights, train,
                                        dynamic and i == 0)
        seconds = time.perf_counter() - start
        ref_outs, ref_grads = outputs_and_grads(model, x, weights, train,
                                                False)
        calls.append(dict(
            size=[h, w], seconds=round(seconds, 2),
            graphs=counter.count, load=os.getloadavg()[0],
            fwd=max(rel_error(a, b) for a, b in zip(outs, ref_outs)),
            grad=max((rel_error(a, b) for a, b in zip(grads, ref_grads)),
                     default=None)))
    return dict(family=family.type, mode=spec['mode'], graph=spec['graph'],
                calls=calls, graphs=counter.count,
                graph_breaks=graph_break_count(),
                torch=torch.__version__)


def markdown(results) -> str:
    lines = ['| family | mode | graph | sizes | graphs / breaks | max rel. '
             'error out / grad | first call (s) | load |',
             '|---|---|---|---|---|---|---|---|']
    for key in sorted(results):
        r = results[key]
        if 'error' in r:
            lines.append(f'| {key} | failed: {r["error"][:150]} ||||||')
            continue
        fwd = max(c['fwd'] for c in r['calls'])
        grads = [c['grad'] for c in r['calls'] if c['grad'] is not None]
        grad = f'{max(grads):.1e}' if grads else '-'
        sizes = ', '.join('x'.join(map(str, c['size'])) for c in r['calls'])
        lines.append(
            f'| {r["family"]} | {r["mode"]} | {r["graph"]} | {sizes} | '
            f'{r["graphs"]} / {r["graph_breaks"]} | {fwd:.1e} / {grad} | '
            f'{r["calls"][0]["seconds"]:.0f} | '
            f'{r["calls"][0]["load"]:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--families', nargs='+')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'])
    parser.add_argument('--graphs', nargs='+', default=['static', 'dynamic'])
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        report(run_worker(json.loads(args.worker)))
        return

    from tests.families import FAMILIES
    results = load_results(args.out)
    for graph in args.graphs:
        for mode in args.modes:
            for family in FAMILIES:
                if args.families and family.type not in args.families:
                    continue
                spec = dict(family=family.type, mode=mode, graph=graph)
                key = f'{family.type} {mode} {graph}'
                results[key] = run_case(__file__, args.out, spec, cwd=REPO)
                print(key, json.dumps(results[key])[:300], flush=True)
                save_results(args.out, results, markdown)


if __name__ == '__main__':
    main()
