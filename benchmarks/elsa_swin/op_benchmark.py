"""Latency and peak memory of the ELSA filter: shift-and-accumulate vs unfold.

Each (implementation, mode) runs in a fresh subprocess so that its peak
resident memory can be measured: the peak resident set (``VmHWM``, reset via
``/proc/self/clear_refs`` once the inputs exist) minus the resident set at
that point, i.e. the extra memory the op needs beyond its inputs. On CUDA,
``torch.cuda.max_memory_allocated`` is used instead and the CARAFE path is
included.

Example (the README numbers)::

    python benchmarks/elsa_swin/op_benchmark.py --shape 1 96 200 336 \
        --heads 3 \
        --out benchmarks/elsa_swin/op_cpu.json
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

from mmext.apis.benchmarking import reset_peak_rss, rss_kb

IMPLS = ('pytorch', 'unfold', 'carafe')


def worker(args) -> dict:
    from mmext.ops import elsa_filter, elsa_filter_unfold
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    B, C, H, W = args.shape
    K, G = args.kernel, args.heads
    need_grad = args.mode == 'fwd+bwd'
    v = torch.randn(B, C, H, W, device=dev, requires_grad=need_grad)
    attn = torch.randn(B, G, K * K, H, W, device=dev).softmax(2)
    attn = attn.reshape(B, G * K * K, H, W).requires_grad_(need_grad)
    ghost = (torch.randn(C, K, K, device=dev) * .02).requires_grad_(need_grad)
    if args.impl == 'unfold':

        def fn():
            return elsa_filter_unfold(v, attn, ghost, kernel_size=K)
    else:

        def fn():
            return elsa_filter(v, attn, ghost, kernel_size=K, impl=args.impl)

    def step():
        if need_grad:
            out = fn()
            out.backward(torch.ones_like(out))
            v.grad = attn.grad = ghost.grad = None
        else:
            with torch.no_grad():
                fn()
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    if dev.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset = reset_peak_rss()
        base = rss_kb('VmRSS') * 1024
    step()  # warm-up (also reaches the peak)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if dev.type == 'cuda':
        peak = torch.cuda.max_memory_allocated() - base
    elif reset:
        peak = rss_kb('VmHWM') * 1024 - base
    else:  # no clear_refs: lifetime peak
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 \
            - base
    times.sort()
    return dict(
        impl=args.impl,
        mode=args.mode,
        median_ms=1e3 * times[len(times) // 2],
        min_ms=1e3 * times[0],
        peak_extra_mib=peak / 2**20,
        v_mib=v.numel() * v.element_size() / 2**20,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape',
                   type=int,
                   nargs=4,
                   default=[1, 96, 200, 336],
                   metavar=('B', 'C', 'H', 'W'))
    p.add_argument('--heads', type=int, default=3)
    p.add_argument('--kernel', type=int, default=7)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads',
                   type=int,
                   default=1,
                   help='torch CPU threads (default 1)')
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--impls', nargs='+', default=None, choices=IMPLS)
    p.add_argument('--modes',
                   nargs='+',
                   default=['fwd', 'fwd+bwd'],
                   choices=['fwd', 'fwd+bwd'])
    p.add_argument('--out', default=None, help='write results as JSON')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--impl', default=None, help=argparse.SUPPRESS)
    p.add_argument('--mode', default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    impls = args.impls or ([
        'pytorch', 'unfold', 'carafe'
    ] if args.device.startswith('cuda') else ['pytorch', 'unfold'])
    rows = []
    for mode in args.modes:
        for impl in impls:
            cmd = [
                sys.executable, __file__, '--worker', '--impl', impl, '--mode',
                mode, '--device', args.device, '--threads',
                str(args.threads), '--repeat',
                str(args.repeat), '--heads',
                str(args.heads), '--kernel',
                str(args.kernel), '--shape', *map(str, args.shape)
            ]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f'{impl}/{mode} failed:\n{res.stderr}')
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{mode:8s} {impl:8s} median {row['median_ms']:9.1f} ms  "
                  f"peak +{row['peak_extra_mib']:8.1f} MiB "
                  f"({row['peak_extra_mib'] / row['v_mib']:.1f}x v)")
    if args.out:
        meta = dict(shape=args.shape,
                    heads=args.heads,
                    kernel=args.kernel,
                    device=args.device,
                    threads=args.threads,
                    repeat=args.repeat,
                    torch=torch.__version__,
                    cpu=platform.processor() or platform.machine(),
                    cores=os.cpu_count())
        with open(args.out, 'w') as f:
            json.dump(dict(meta=meta, results=rows), f, indent=2)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
