#!/usr/bin/env python
"""Eager vs ``torch.compile`` (inductor, CPU) time of every family's
real-size backbone, side by side in one process.

    python benchmarks/compile/bench.py --out benchmarks/compile/cpu.json \
        [--only DualViT-S] [--rounds 3]

One worker process per (model, mode, input): it builds the backbone
(construction weights, seed 0), runs one eager call, compiles the same
module (``torch.compile``, inductor; the compiled and the eager call share
the weights) and times its first call: **compile time** is that first call
minus the median compiled call. Then ``--rounds`` alternating rounds (the
order swaps each round) time one eager and one compiled call each: wall
and process-CPU seconds, the 1-minute load average at every round. The
speed-up is the median of the per-round ratios eager / compiled. The
largest relative difference of the outputs (compiled vs eager) is
recorded as a check. ``dynamic`` rows compile with the input's height and
width marked dynamic (the graph a detector gets after its second input
size); the others compile for the one shape.

Inference runs under ``torch.inference_mode()``; a training step is the
forward, the backward of the sum of the output means and clearing the
gradients. A-ViT-S halts tokens (gate centre calibrated as in
``benchmarks/avit/speed.py`` for a mean depth near 8 of 12): its token
removal is data-dependent, so the compiled removal form runs as several
graphs with eager code between them; the masked form
(``token_removal=False``) is one graph.

Results are merged into ``--out`` (json) with a markdown table next to it
(``.md``); rows of other models stay.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from case_runner import (load_results, report, run_case,  # noqa: E402
                         save_results)

#: name -> backbone config; A-ViT's gate centre is calibrated at run time
MODELS = {
    'DualViT-S': dict(type='mmext.DualViT', arch='s'),
    'ELSA-Swin-T': dict(type='mmext.ELSASwin', arch='t'),
    'A-ViT-S': dict(type='mmext.AViT', arch='s'),
    'A-ViT-S masked': dict(type='mmext.AViT', arch='s',
                           token_removal=False),
    'Shuffle-Swin-XTi': dict(type='mmext.ShuffleSwin', arch='xtiny'),
    'Shuffle-DeiT-Ti': dict(type='mmext.ShuffleViT', arch='deit-tiny'),
}
#: (model, mode, input shape, dynamic)
CASES = [
    ('DualViT-S', 'infer', (1, 3, 512, 512), False),
    ('DualViT-S', 'infer', (1, 3, 800, 1344), False),
    ('DualViT-S', 'infer', (1, 3, 800, 1344), True),
    ('DualViT-S', 'train', (2, 3, 512, 512), False),
] + [(name, mode, shape, False) for name in MODELS
     if name != 'DualViT-S'
     for mode, shape in (('infer', (1, 3, 800, 1344)),
                         ('train', (2, 3, 512, 512)))
     if not (name == 'A-ViT-S masked' and mode == 'train')]
AVIT_TARGET_DEPTH = 8.


def case_key(case) -> str:
    name, mode, shape, dynamic = case
    text = f'{name} {mode} {"x".join(map(str, shape))}'
    return text + (' dynamic' if dynamic else '')


# -- worker ----------------------------------------------------------------
def build(name, shape):
    import torch

    import mmext.models  # noqa: F401
    from mmext.registry import MODELS as REGISTRY
    cfg = dict(MODELS[name])
    if cfg['type'] == 'mmext.AViT':
        cfg['gate_center'] = avit_gate_center(shape)
    torch.manual_seed(0)
    model = REGISTRY.build(cfg)
    model.init_weights()
    return model


def avit_gate_center(shape) -> float:
    """The gate centre giving a mean depth near AVIT_TARGET_DEPTH, found
    as ``benchmarks/avit/speed.py`` does (bisection on a half-size
    input)."""
    import importlib.util

    import torch
    path = osp.join(REPO, 'benchmarks', 'avit', 'speed.py')
    spec = importlib.util.spec_from_file_location('avit_speed', path)
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    model = speed.build_avit()
    torch.manual_seed(0)
    x = torch.randn(1, 3, shape[2] // 2, shape[3] // 2)
    return speed.calibrate(model, x, AVIT_TARGET_DEPTH)


def step(model, x, train):
    import torch

    from mmext.apis.model_spec import training_step
    if train:
        training_step(model, x)
        return None
    with torch.inference_mode():
        return model(x)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def max_rel_error(ref, out) -> float:
    from mmext.utils.complexity import iter_tensors
    errors = [(a.float() - b.float()).abs().max() /
              a.float().abs().max().clamp_min(1e-30)
              for a, b in zip(iter_tensors(ref), iter_tensors(out))]
    return max(e.item() for e in errors)


def run_worker(spec: dict) -> dict:
    import torch
    import torch._dynamo

    from mmext.engine.compile import (INDUCTOR_OPTIONS, GraphCounter,
                                      graph_break_count)
    torch.set_num_threads(spec['threads'])
    name, mode, shape, dynamic = spec['case']
    train = mode == 'train'
    model = build(name, shape).train(train)
    torch.manual_seed(1)
    x = torch.randn(*shape)
    counter = GraphCounter('inductor', INDUCTOR_OPTIONS)
    compiled = torch.compile(model, backend=counter)
    if dynamic:
        torch._dynamo.mark_dynamic(x, 2)
        torch._dynamo.mark_dynamic(x, 3)
    torch._dynamo.utils.counters.clear()

    ref, eager_first, _ = timed(lambda: step(model, x, train))
    out, compiled_first, _ = timed(lambda: step(compiled, x, train))
    error = None if train else max_rel_error(ref, out)
    del ref, out
    rounds = []
    for r in range(spec['rounds']):
        load = os.getloadavg()[0]
        order = ('eager', 'compiled') if r % 2 == 0 else ('compiled',
                                                          'eager')
        row = dict(load=load)
        for which in order:
            fn = model if which == 'eager' else compiled
            _, wall, cpu = timed(lambda: step(fn, x, train))
            row[which] = dict(wall=wall, cpu=cpu)
        rounds.append(row)

    def med(which, key):
        return statistics.median(r[which][key] for r in rounds)

    return dict(
        case=case_key(spec['case']),
        model=name, mode=mode, shape=list(shape), dynamic=dynamic,
        threads=spec['threads'],
        eager_first_call_s=eager_first,
        compiled_first_call_s=compiled_first,
        compile_s=compiled_first - med('compiled', 'wall'),
        graphs=counter.count,
        graph_breaks=graph_break_count(),
        max_rel_error=error,
        rounds=rounds,
        median_wall_s=dict(eager=med('eager', 'wall'),
                           compiled=med('compiled', 'wall')),
        median_cpu_s=dict(eager=med('eager', 'cpu'),
                          compiled=med('compiled', 'cpu')),
        speedup_wall=statistics.median(r['eager']['wall'] /
                                       r['compiled']['wall']
                                       for r in rounds),
        speedup_cpu=statistics.median(r['eager']['cpu'] / r['compiled']['cpu']
                                      for r in rounds),
        load_range=[min(r['load'] for r in rounds),
                    max(r['load'] for r in rounds)],
        torch=torch.__version__)


# -- driver ----------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = [
        '| model | mode | input | graph | compile (s) | eager (s) | '
        'compiled (s) | speed-up (wall / cpu) | graphs / breaks | '
        'max rel. diff | load (1 min) |',
        '|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    for key in sorted(results):
        r = results[key]
        if 'error' in r:
            lines.append(f'| {key} | failed: {r["error"][:120]} |' +
                         ' |' * 9)
            continue
        diff = '' if r['max_rel_error'] is None else \
            f'{r["max_rel_error"]:.1e}'
        lines.append(
            f'| {r["model"]} | {r["mode"]} | {"x".join(map(str, r["shape"]))}'
            f' | {"dynamic H, W" if r["dynamic"] else "static"}'
            f' | {r["compile_s"]:.0f} | {r["median_wall_s"]["eager"]:.3f}'
            f' | {r["median_wall_s"]["compiled"]:.3f}'
            f' | {r["speedup_wall"]:.2f} / {r["speedup_cpu"]:.2f}'
            f' | {r["graphs"]} / {r["graph_breaks"]} | {diff}'
            f' | {r["load_range"][0]:.1f}-{r["load_range"][1]:.1f} |')
    lines.append('')
    lines.append(f'{len(results)} rows; median over rounds; threads: '
                 f'{sorted({r.get("threads") for r in results.values()})}')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='json file (merged)')
    parser.add_argument('--only', nargs='+', help='model names to run')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        report(run_worker(json.loads(args.worker)))
        return

    results = load_results(args.out)
    for case in CASES:
        if args.only and case[0] not in args.only or \
                case[1] not in args.modes:
            continue
        spec = dict(case=case, rounds=args.rounds, threads=args.threads)
        print(f'== {case_key(case)}', flush=True)
        result = run_case(__file__, args.out, spec, cwd=REPO)
        if 'error' in result:
            results[case_key(case)] = result
            print(f'   failed: {result["error"]}', flush=True)
        else:
            results[result['case']] = result
            print(f'   compile {result["compile_s"]:.0f} s, eager '
                  f'{result["median_wall_s"]["eager"]:.3f} s, compiled '
                  f'{result["median_wall_s"]["compiled"]:.3f} s, speed-up '
                  f'{result["speedup_wall"]:.2f} (load '
                  f'{result["load_range"][1]:.1f})', flush=True)
        save_results(args.out, results, markdown)


if __name__ == '__main__':
    main()
