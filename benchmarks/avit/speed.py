#!/usr/bin/env python
"""A-ViT-S inference with halted tokens removed vs plain DeiT-S (mmpretrain's
``VisionTransformer``) at the same weights; mean token depth in the same run.

    python benchmarks/avit/speed.py --out benchmarks/avit/cpu.json \
        [--shape 1x3x800x1344 --shape 1x3x512x512] [--depths 10 8 6]

No released A-ViT weights are reachable here, so the weights are random
(DeiT's init, seed 0) and the halting is set by ``gate_center``: for each
target mean depth the center is found by bisection on a half-size input,
and the depth actually reached at full size is what the table reports. The
speed of a token-removing model depends on how many token-blocks run, not on
why, so the figures transfer to trained weights with the same mean depth
(attention, quadratic in the running tokens, gains a little more when the
depths spread than when they are uniform).

* latency: one process, every variant built once from the same weights,
  one untimed round, then alternating rounds (``--rounds``; median and
  minimum), torch threads ``--threads``; the load average is recorded
  beside each figure. Speed-ups are medians of the per-round ratios.
* ideal speed-up: token-blocks of DeiT / token-blocks A-ViT ran, i.e.
  ``depth / mean depth``; efficiency = measured speed-up over the same
  A-ViT code with no token halting / ideal. The speed-up over mmpretrain's
  DeiT-S is reported too (it also includes the differences between the two
  implementations of the same blocks).
* peak memory: each variant in a fresh process through
  ``mmext.apis.benchmarking``'s worker (peak RSS increase during
  inference).
* batch 2 with different halting per image: ``removal_mode`` 'padded' vs
  'packed', vs one call per image, vs the masked form.
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
NO_HALT = 1e9  # gate center at which no token halts before the last block


def build_avit(gate_center=NO_HALT, **kwargs):
    from mmext.models.backbones.avit import AViT
    torch.manual_seed(0)
    model = AViT(arch='small', gate_scale=10., gate_center=gate_center,
                 **kwargs)
    model.init_weights()
    return model.eval()


def avit_to_mmpretrain(state):
    """Our A-ViT/DeiT keys -> mmpretrain ``VisionTransformer``'s."""
    out = {}
    for key, value in state.items():
        for old, new in (('blocks.', 'layers.'), ('.norm1.', '.ln1.'),
                         ('.norm2.', '.ln2.'), ('.ffn.0.', '.ffn.layers.0.0.'),
                         ('.ffn.2.', '.ffn.layers.1.')):
            key = key.replace(old, new)
        out['ln1.' + key[5:] if key.startswith('norm.') else key] = value
    return out


def build_deit(avit):
    from mmpretrain.models import VisionTransformer
    model = VisionTransformer(arch='deit-small', img_size=224,
                              out_type='featmap')
    model.load_state_dict(avit_to_mmpretrain(avit.state_dict()))
    model.eval()  # (its train() returns None)
    return model


def factory():
    """For the benchmarking worker: the variant named in the
    environment (memory is measured one variant per process)."""
    variant = json.loads(os.environ['AVIT_BENCH_VARIANT'])
    avit = build_avit(variant.get('gate_center', NO_HALT),
                      **variant.get('kwargs', {}))
    return build_deit(avit) if variant['kind'] == 'deit' else avit


@torch.inference_mode()
def mean_depth(model, x):
    model(x)
    return model.halting_state['depth'].mean().item()


def calibrate(model, x, target, lo=-20., hi=80., steps=12):
    """gate_center whose mean depth on ``x`` is closest to ``target``
    (the depth grows with the center)."""
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        model.gate_center = mid
        depth = mean_depth(model, x)
        if best is None or abs(depth - target) < abs(best[1] - target):
            best = (mid, depth)
        lo, hi = (mid, hi) if depth < target else (lo, mid)
    return best[0]


@torch.inference_mode()
def time_rounds(variants, x, rounds):
    """One untimed round, then alternating rounds: every variant once per
    round."""
    for run in variants.values():
        run(x)
    times = {name: [] for name in variants}
    depths, loads = {}, []
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
            if getattr(run, 'halting_state', None):
                depths[name] = run.halting_state['depth'].mean().item()
        loads.append(os.getloadavg()[0])
    return times, depths, loads


def paired_speedup(reference, times):
    """Median over rounds of ``reference / time`` within each round: the
    load of a shared machine drifts between rounds much more than within
    one."""
    return statistics.median(r / t for r, t in zip(reference, times))


def measure_shape(shape, depths, rounds, threads, memory):
    from mmext.apis.benchmarking import measure
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    small = torch.nn.functional.interpolate(x, scale_factor=0.5,
                                            mode='bilinear')
    avit = build_avit()
    deit = build_deit(avit)
    with torch.inference_mode():  # same weights: no halting == DeiT
        ours = avit(x)[0]
        ref = deit(x)[0]
    same_weights_err = ((ours - ref).abs().max() / ref.abs().max()).item()

    centers = {f'depth~{d}': calibrate(avit, small, d) for d in depths}
    centers['no halting'] = NO_HALT
    models = {}
    for label, center in centers.items():
        model = build_avit(center)
        models[f'A-ViT-S removal ({label})'] = (model, center)
    masked = build_avit(centers[f'depth~{depths[0]}'], token_removal=False)
    variants = {'DeiT-S (mmpretrain)': deit}
    variants.update({k: m for k, (m, _) in models.items()})
    variants['A-ViT-S masked (official form)'] = masked
    times, depths, loads = time_rounds(variants, x, rounds)
    t_deit = times['DeiT-S (mmpretrain)']
    t_full = times['A-ViT-S removal (no halting)']
    records = []
    for name, model in variants.items():
        rec = dict(name=name, shape='x'.join(map(str, shape)),
                   latency_s=statistics.median(times[name]),
                   latency_min_s=min(times[name]), times_s=times[name],
                   threads=threads, load_avg_1min=loads,
                   speedup_vs_deit=paired_speedup(t_deit, times[name]))
        if name.startswith('A-ViT'):
            depth = depths[name]
            rec.update(mean_depth=depth, gate_center=model.gate_center,
                       ideal_speedup=12 / depth)
            if name.startswith('A-ViT-S removal'):
                # against the same code with every token running, so that
                # only the removal is measured
                rec['speedup_vs_no_halting'] = paired_speedup(
                    t_full, times[name])
                rec['efficiency'] = rec['speedup_vs_no_halting'] / rec[
                    'ideal_speedup']
        records.append(rec)
    if memory:
        for rec in records:
            if rec['name'].startswith('DeiT'):
                variant = dict(kind='deit')
            else:
                variant = dict(kind='avit', gate_center=rec['gate_center'])
                if 'masked' in rec['name']:
                    variant['kwargs'] = dict(token_removal=False)
            os.environ['AVIT_BENCH_VARIANT'] = json.dumps(variant)
            mem = measure(
                dict(factory=f'{osp.abspath(__file__)}:factory',
                     mode='infer', shape=list(shape), device='cpu',
                     warmup=0, iters=1, threads=threads), timeout=3600)
            rec.update(peak_mem_mb=mem['peak_mem_mb'],
                       peak_delta_mb=mem['peak_delta_mb'],
                       mem_load_avg_1min=mem['load_avg_1min'])
    return records, same_weights_err


@torch.inference_mode()
def measure_batch(shape, depth, rounds):
    """Batch of 2 images halting differently: the two removal modes, one
    call per image, and the masked form."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    x[1] *= 0.3  # a low-contrast second image halts differently
    model = build_avit()
    model.gate_center = calibrate(model, x, depth)
    model(x)
    per_image = model.halting_state['depth'].mean(1).tolist()
    variants = {}
    for mode in ('padded', 'packed'):
        m = build_avit(model.gate_center, removal_mode=mode)
        variants[mode] = m
    variants['one call per image'] = lambda images: torch.cat(
        [model(image[None])[0] for image in images])
    variants['masked'] = build_avit(model.gate_center, token_removal=False)
    times, _, loads = time_rounds(variants, x, rounds)
    return [
        dict(name=f'A-ViT-S batch 2 ({name})',
             shape='x'.join(map(str, shape)),
             latency_s=statistics.median(t), times_s=t,
             mean_depth_per_image=per_image, load_avg_1min=loads)
        for name, t in times.items()
    ]


def markdown(records, errors):
    lines = [
        '| model | input | mean depth | latency (s, median / min) '
        '| speed-up vs DeiT-S '
        '| speed-up vs no halting | ideal | efficiency '
        '| peak mem delta (MB) | load (1 min) |',
        '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for r in records:
        def f(key, fmt):
            return fmt.format(r[key]) if key in r else ''
        depth = f('mean_depth', '{:.2f}')
        if 'mean_depth_per_image' in r:
            depth = ' / '.join(f'{d:.2f}' for d in r['mean_depth_per_image'])
        loads = r['load_avg_1min']
        lines.append(
            f"| {r['name']} | {r['shape']} | {depth} | "
            f"{r['latency_s']:.3f} / {min(r['times_s']):.3f} | "
            f"{f('speedup_vs_deit', '{:.2f}')} | "
            f"{f('speedup_vs_no_halting', '{:.2f}')} | "
            f"{f('ideal_speedup', '{:.2f}')} | {f('efficiency', '{:.2f}')} "
            f"| {f('peak_delta_mb', '{:.0f}')} | "
            f'{min(loads):.1f}-{max(loads):.1f} |')
    lines.append('')
    for shape, err in errors.items():
        lines.append(f'Same weights, no halting: A-ViT-S vs mmpretrain '
                     f'DeiT-S at {shape}: max rel. error {err:.1e}.')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--shape', action='append',
                        help='NxCxHxW (repeatable; default 1x3x800x1344 and '
                        '1x3x512x512)')
    parser.add_argument('--depths', type=float, nargs='+',
                        default=[10., 8., 6.],
                        help='target mean depths (of 12)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--batch-shape', default='2x3x512x512',
                        help="'' to skip the batch-2 comparison")
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--out', required=True, help='JSON (a .md is '
                        'written beside it)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, REPO)
    import mmext.models  # noqa: F401
    shapes = [tuple(map(int, s.split('x')))
              for s in (args.shape or ['1x3x800x1344', '1x3x512x512'])]
    records, errors = [], {}
    for shape in shapes:
        recs, err = measure_shape(shape, args.depths, args.rounds,
                                  args.threads, not args.no_memory)
        records += recs
        errors['x'.join(map(str, shape))] = err
        print(markdown(recs, {}), flush=True)
    if args.batch_shape:
        records += measure_batch(
            tuple(map(int, args.batch_shape.split('x'))),
            args.depths[len(args.depths) // 2],
            args.rounds)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(records=records, same_weights_error=errors,
                       torch=torch.__version__), f, indent=1)
    table = markdown(records, errors)
    with open(osp.splitext(args.out)[0] + '.md', 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
