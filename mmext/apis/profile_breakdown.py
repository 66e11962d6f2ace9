"""Where a backbone's CPU time goes (``tools/profile_breakdown.py``): one
profiled inference or training step, self CPU time summed per op kind
(attention, linear, conv, other).

    python tools/profile_breakdown.py DualViT --arch s --mode train
    python tools/profile_breakdown.py --factory F.py:dualvit_s --mode infer

The model is given as in ``tools/benchmark.py``; one untimed warm-up step
runs first. Attention counts the fused SDPA kernels and, for code that writes
attention out, batched matmuls and softmax. The profiler adds some overhead:
use ``tools/benchmark.py`` for latencies.
"""
import argparse
import json
import time

from .model_spec import (add_model_arguments, build_model, model_cfg,
                         parse_shape, run_step)

ATTENTION_OPS = ('aten::bmm', 'aten::baddbmm', 'aten::_softmax',
                 'aten::_softmax_backward_data')
LINEAR_OPS = ('aten::mm', 'aten::addmm')


def _kind(op: str) -> str:
    if 'scaled_dot_product' in op or op in ATTENTION_OPS:
        return 'attention'
    if op in LINEAR_OPS:
        return 'linear'
    if 'convolution' in op:
        return 'conv'
    return 'other'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_arguments(parser)
    parser.add_argument('--mode', choices=['infer', 'train'], default='infer')
    parser.add_argument('--shape', type=parse_shape, default=None,
                        help='default 1x3x800x1344 (infer), 2x3x512x512 '
                        '(train)')
    args = parser.parse_args(argv)
    if not args.factory and not args.model:
        parser.error('give a model or --factory FILE:FUNCTION')

    import torch
    torch.manual_seed(0)
    cfg = None if args.factory else model_cfg(args)
    model = build_model(dict(cfg=cfg, factory=args.factory))
    train = args.mode == 'train'
    model.train(train)
    shape = args.shape or ([2, 3, 512, 512] if train else [1, 3, 800, 1344])
    x = torch.randn(*shape)

    def step():
        run_step(model, x, train)

    step()
    with torch.profiler.profile() as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    seconds = dict(attention=0., linear=0., conv=0., other=0.)
    for event in prof.key_averages():
        seconds[_kind(event.key)] += event.self_cpu_time_total / 1e6
    print(json.dumps(dict(model=cfg or args.factory, mode=args.mode,
                          shape='x'.join(map(str, shape)), wall_s=wall,
                          **{k: round(v, 3) for k, v in seconds.items()})))

