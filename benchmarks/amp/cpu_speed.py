#!/usr/bin/env python
"""float32 vs bfloat16 autocast on a CPU, every family's backbone at real
sizes, side by side in one process.

    python benchmarks/amp/cpu_speed.py --out benchmarks/amp/cpu_speed.json \
        [--rounds 5] [--threads 1] [--cases dualvit_s:512x512:infer ...]

For each case (model, input, mode) the model is built once (random
weights, seed 0) and runs one untimed iteration per precision, then
``--rounds`` rounds; each round runs the float32 and the bfloat16
(``torch.autocast('cpu', dtype=torch.bfloat16)``) iteration back to back,
in an order that alternates from round to round, so that the machine's
drift (+-20% on the shared development VM) hits both alike. Inference:
eval mode under ``torch.inference_mode()``; training step: train mode,
forward + backward of the sum of the output means (the step of
``tools/benchmark.py``), no optimizer. Reported per case: median wall and
process CPU time per precision, the median of the per-round bf16/fp32
ratios of both, and the 1-minute load average of every round. With one
thread the process CPU time hardly depends on the load (a descheduled
thread accrues none): compare CPU-time ratios on a busy machine.

``--profile`` adds, for the first case, the self CPU time per operator
(``torch.profiler``, one iteration per precision) grouped into matrix
products / convolutions, dtype casts and the rest: where bfloat16 gains
and where it pays.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

MODELS = {
    'dualvit_s': dict(type='mmext.DualViT', arch='s'),
    'elsa_swin_t': dict(type='mmext.ELSASwin', arch='t'),
    'avit_s': dict(type='mmext.AViT', arch='s', out_indices=(3, 7, 11)),
    'shuffle_swin_xtiny': dict(type='mmext.ShuffleSwin', arch='xtiny'),
    'shuffle_deit_tiny': dict(type='mmext.ShuffleViT', arch='deit-tiny',
                              out_indices=(3, 7, 11)),
}
DEFAULT_CASES = [f'{m}:512x512:{mode}' for m in MODELS
                 for mode in ('infer', 'train')] + [
    'dualvit_s:800x1344:infer', 'elsa_swin_t:800x1344:infer',
    'dualvit_s:800x1344:train', 'elsa_swin_t:800x1344:train'
]
#: operators of matrix products and convolutions (oneDNN / MKL kernels)
GEMM_OPS = ('mm', 'addmm', 'bmm', 'baddbmm', 'matmul', 'linear',
            'convolution', 'mkldnn_convolution', 'conv2d', 'flash_attention',
            'scaled_dot_product', 'convolution_backward', 'mkldnn_rnn')
CAST_OPS = ('aten::to', 'aten::_to_copy', 'aten::copy_')


def cpu_flags():
    with open('/proc/cpuinfo') as f:
        text = f.read()
    flags = next(ln for ln in text.splitlines() if ln.startswith('flags'))
    name = next(ln for ln in text.splitlines() if ln.startswith('model name'))
    wanted = ('avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile',
              'avx512_fp16', 'avx2')
    have = set(flags.split(':', 1)[1].split())
    return dict(model=name.split(':', 1)[1].strip(),
                flags={f: f in have for f in wanted},
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                mkldnn_bf16=torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build(name):
    import mmext.models  # noqa: F401
    from mmengine.registry import MODELS as REG
    torch.manual_seed(0)
    model = REG.build(dict(MODELS[name], drop_path_rate=0.))
    model.init_weights()
    return model


def step(model, x, train, dtype):
    from mmext.apis.model_spec import run_step
    with torch.autocast('cpu', dtype=dtype or torch.bfloat16,
                        enabled=dtype is not None):
        run_step(model, x, train)


def timed(model, x, train, dtype):
    wall, cpu = time.perf_counter(), time.process_time()
    step(model, x, train, dtype)
    return time.perf_counter() - wall, time.process_time() - cpu


PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16}


def run_case(case, rounds):
    name, shape, mode = case.split(':')
    h, w = map(int, shape.split('x'))
    train = mode == 'train'
    model = build(name).train(train)
    x = torch.randn(1, 3, h, w)
    for dtype in PRECISIONS.values():  # warm-up (oneDNN primitive caches)
        step(model, x, train, dtype)
    times = {p: dict(wall=[], cpu=[]) for p in PRECISIONS}
    loads = []
    order = list(PRECISIONS)
    for r in range(rounds):
        for p in (order if r % 2 == 0 else order[::-1]):
            wall, cpu = timed(model, x, train, PRECISIONS[p])
            times[p]['wall'].append(wall)
            times[p]['cpu'].append(cpu)
        loads.append(os.getloadavg()[0])
    ratio = {k: statistics.median(b / f for b, f in zip(
        times['bf16'][k], times['fp32'][k])) for k in ('wall', 'cpu')}
    return dict(case=case, model=name, shape=[1, 3, h, w], mode=mode,
                rounds=rounds,
                median_s={p: {k: statistics.median(v) for k, v in t.items()}
                          for p, t in times.items()},
                times_s=times, bf16_over_fp32=ratio, load_avg_1min=loads)


def profile(case):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    name, shape, mode = case.split(':')
    h, w = map(int, shape.split('x'))
    train = mode == 'train'
    model = build(name).train(train)
    x = torch.randn(1, 3, h, w)
    out = {}
    for p, dtype in PRECISIONS.items():
        step(model, x, train, dtype)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step(model, x, train, dtype)
        groups = dict(gemm_conv=0., casts=0., other=0.)
        top = []
        for evt in prof.key_averages():
            if not evt.key.startswith('aten::'):
                continue
            us = evt.self_cpu_time_total
            op = evt.key[len('aten::'):]
            if evt.key in CAST_OPS:
                groups['casts'] += us
            elif any(op == g or op.startswith(g) or g in op
                     for g in GEMM_OPS):
                groups['gemm_conv'] += us
            else:
                groups['other'] += us
            top.append((evt.key, us))
        top.sort(key=lambda t: -t[1])
        out[p] = dict(self_cpu_ms={k: v / 1e3 for k, v in groups.items()},
                      top_ops_ms=[(k, v / 1e3) for k, v in top[:12]])
    return dict(case=case, **out)


def markdown(record):
    cpu = record['cpu']
    flags = ', '.join(f'{k} {"yes" if v else "no"}'
                      for k, v in cpu['flags'].items())
    lines = [
        f"CPU: {cpu['model']} ({flags}; torch CPU capability "
        f"{cpu['torch_cpu_capability']}, oneDNN bf16 "
        f"{cpu['mkldnn_bf16']}), {record['threads']} thread(s), torch "
        f"{record['torch']}; benchmarks/amp/cpu_speed.py\n",
        '| model | input | mode | fp32 wall (s) | bf16 wall (s) | '
        'bf16/fp32 wall | fp32 CPU (s) | bf16 CPU (s) | bf16/fp32 CPU | '
        'rounds | load (min-max) |',
        '|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    for r in record['results']:
        m = r['median_s']
        lines.append(
            f"| {r['model']} | {r['shape'][2]}x{r['shape'][3]} | {r['mode']} "
            f"| {m['fp32']['wall']:.3f} | {m['bf16']['wall']:.3f} | "
            f"{r['bf16_over_fp32']['wall']:.2f} | {m['fp32']['cpu']:.3f} | "
            f"{m['bf16']['cpu']:.3f} | {r['bf16_over_fp32']['cpu']:.2f} | "
            f"{r['rounds']} | {min(r['load_avg_1min']):.1f}-"
            f"{max(r['load_avg_1min']):.1f} |")
    for prof in record.get('profiles', []):
        lines += ['', f"Self CPU time by operator group, {prof['case']} "
                  '(one iteration each, torch.profiler):', '',
                  '| group | fp32 (ms) | bf16 (ms) |', '|---|---|---|']
        for g in prof['fp32']['self_cpu_ms']:
            lines.append(f"| {g} | {prof['fp32']['self_cpu_ms'][g]:.0f} | "
                         f"{prof['bf16']['self_cpu_ms'][g]:.0f} |")
        for p in ('fp32', 'bf16'):
            tops = ', '.join(f'{k[6:]} {v:.0f}'
                             for k, v in prof[p]['top_ops_ms'][:8])
            lines.append(f'\n{p} top operators (ms): {tops}')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--cases', nargs='+', default=DEFAULT_CASES)
    parser.add_argument('--profile', nargs='*', default=None,
                        help='cases to profile (default: none; no value: '
                        'the first case)')
    args = parser.parse_args()
    from mmext.utils.fileio import atomic_write
    torch.set_num_threads(args.threads)
    record = dict(cpu=cpu_flags(), threads=args.threads,
                  torch=torch.__version__, results=[], profiles=[])

    def save():
        with atomic_write(args.out, 'w', force=True) as f:
            json.dump(record, f, indent=1)
        with atomic_write(osp.splitext(args.out)[0] + '.md', 'w',
                          force=True) as f:
            f.write(markdown(record))

    for case in args.cases:
        record['results'].append(run_case(case, args.rounds))
        r = record['results'][-1]
        print(case, json.dumps(r['bf16_over_fp32']), r['median_s'],
              flush=True)
        save()
    if args.profile is not None:
        for case in args.profile or args.cases[:1]:
            record['profiles'].append(profile(case))
            save()


if __name__ == '__main__':
    main()
