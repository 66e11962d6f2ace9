"""onnxruntime vs PyTorch eager on CPU, side by side in one process.

Each model (random weights: speed does not depend on them) is exported
with dynamic batch / height / width through ``mmext.deploy``; then rounds
alternate between the two runtimes (eager, ORT, eager, ORT, ...), each
round the median of ``--iters`` timed forwards after one warm-up, with the
same number of threads for both (``torch.set_num_threads`` and ORT's
``intra_op_num_threads``). The load average is recorded with every round.
Also measured: A-ViT-T in its masked form (the exported one) in both
runtimes, and in PyTorch with token removal (what removal would save).

    python benchmarks/deploy/speed.py [--threads 1] [--rounds 3] [--iters 3]

Writes ``benchmarks/deploy/speed.json`` and ``speed.md`` (``--out``).
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

import torch  # noqa: E402

#: (name, backbone config, input H x W)
MODELS = [
    ('Shuffle DeiT-Ti', dict(type='mmext.ShuffleViT', arch='deit-tiny'),
     (512, 512)),
    ('Shuffle Swin-XTi', dict(type='mmext.ShuffleSwin', arch='xtiny',
                              drop_path_rate=0.), (512, 512)),
    ('DualViT-S', dict(type='mmext.DualViT', arch='s', drop_path_rate=0.),
     (800, 1344)),
]
#: gate_center 2: random weights halt a part of the tokens early
AVIT = ('A-ViT-T', dict(type='mmext.AViT', arch='tiny', out_indices=(-1, ),
                        gate_center=2.), (512, 512))


def build(cfg):
    import mmext.models  # noqa: F401
    from mmengine.registry import MODELS as REGISTRY
    torch.manual_seed(0)
    model = REGISTRY.build(cfg)
    model.init_weights()
    return model.eval()


def timed(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def export(model, shape, opset):
    from mmext.deploy.backbone import IMAGE_AXES, exportable_copy
    from mmext.deploy.onnx_export import export_onnx, torch_outputs
    graph, _ = exportable_copy(model)
    example = torch.randn(2, 3, *shape)
    names = [f'feat{i}' for i in range(len(torch_outputs(graph,
                                                         [example])))]
    start = time.perf_counter()
    proto = export_onnx(graph, (example, ), ['image'], names,
                        dict(image=IMAGE_AXES), opset=opset)
    return graph, proto, time.perf_counter() - start


def measure(name, model, shape, args, extra_eager=None):
    from mmext.deploy.onnx_export import (max_rel_error, ort_session,
                                          run_session, torch_outputs)
    graph, proto, export_s = export(model, shape, args.opset)
    session = ort_session(proto, threads=args.threads)
    x = torch.randn(1, 3, *shape)
    err = max(
        max_rel_error(a, e.numpy())
        for a, e in zip(run_session(session, [x]), torch_outputs(graph, [x])))
    runs = dict(eager=lambda: torch_outputs(graph, [x]),
                onnxruntime=lambda: run_session(session, [x]))
    runs.update(extra_eager or {})
    rounds = []
    for _ in range(args.rounds):
        rnd = {}
        for key, fn in runs.items():
            rnd[key] = timed(fn, args.iters)
            rnd[f'load_{key}'] = os.getloadavg()[0]
        rounds.append(rnd)
        print(name, {k: round(v, 3) for k, v in rnd.items()}, flush=True)
    best = {k: min(r[k] for r in rounds) for k in runs}
    return dict(model=name,
                input=f'1x3x{shape[0]}x{shape[1]}',
                export_s=round(export_s, 1),
                onnx_mib=round(len(proto.SerializeToString()) / 2**20, 1),
                max_rel_error=err,
                rounds=rounds,
                best_s=best,
                eager_over_ort=best['eager'] / best['onnxruntime'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--opset', type=int, default=18,
                        help='ONNX opset (23: SDPA as one Attention op)')
    parser.add_argument('--only', nargs='*', help='model names to run')
    parser.add_argument('--out', default=osp.join(HERE, 'speed'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = []
    for name, cfg, shape in MODELS + [AVIT]:
        if args.only and name not in args.only:
            continue
        model = build(cfg)
        extra = None
        if name == AVIT[0]:
            # token removal (the PyTorch default in eval mode) for contrast
            x = torch.randn(1, 3, *shape)

            def removal(model=model, x=x):
                with torch.no_grad():
                    model(x)

            extra = dict(eager_token_removal=removal)
        record = measure(name, model, shape, args, extra)
        if name == AVIT[0]:
            with torch.no_grad():
                model(torch.randn(1, 3, *shape))
            record['mean_depth'] = float(model.halting_state['depth'].mean())
        records.append(record)
    write(records, args)


def write(records, args):
    from mmext.utils.fileio import atomic_write
    env = dict(torch=torch.__version__, threads=args.threads,
               opset=args.opset,
               cpu=platform.processor() or platform.machine(),
               cores=os.cpu_count())
    import onnxruntime
    env['onnxruntime'] = onnxruntime.__version__
    with atomic_write(args.out + '.json', 'w', force=True) as f:
        json.dump(dict(env=env, results=records), f, indent=1)
    lines = [
        f'CPU, {args.threads} thread(s) for both runtimes, opset '
        f'{args.opset}, torch '
        f'{env["torch"]}, onnxruntime {env["onnxruntime"]}; best of '
        f'{args.rounds} alternating rounds (median of {args.iters} '
        'forwards each); load = 1-minute load average during the rounds.',
        '',
        '| model | input | eager (s) | onnxruntime (s) | eager / ORT | '
        'ORT vs eager error | load | export (s) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in records:
        loads = [v for rnd in r['rounds'] for k, v in rnd.items()
                 if k.startswith('load_')]
        extra = ''
        if 'eager_token_removal' in r['best_s']:
            removal = r['best_s']['eager_token_removal']
            extra = (f' (token removal: {removal:.3f} s, mean depth '
                     f'{r["mean_depth"]:.1f})')
        lines.append(
            f'| {r["model"]} | {r["input"]} | {r["best_s"]["eager"]:.3f}'
            f'{extra} | {r["best_s"]["onnxruntime"]:.3f} | '
            f'{r["eager_over_ort"]:.2f} | {r["max_rel_error"]:.1e} | '
            f'{min(loads):.1f}-{max(loads):.1f} | {r["export_s"]} |')
    with atomic_write(args.out + '.md', 'w', force=True) as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
