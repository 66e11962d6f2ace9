"""Latency and peak memory of a backbone: inference (forward) and a training
step (forward + backward), on CPU or CUDA (``tools/benchmark.py``).

The model is any registered backbone, given as

* a type and arch:            ``DualViT --arch s`` (``mmext.`` scope implied),
* a config snippet (a dict):  ``"dict(type='mmext.DualViT', arch='b')"``,
* a config file + key:        ``configs/x.py --cfg-key model.backbone``,
* or a factory for code outside mmext (e.g. an official implementation):
  ``--factory path/to/file.py:function`` (called with no arguments).

Method (see also ``benchmarks/README.md``):

* every measurement (one model, one mode) runs in a fresh subprocess, so
  allocator caches, lazy initialisation and peak memory of one do not leak
  into the next;
* inference runs under ``torch.inference_mode()`` on a model in eval mode;
  the training step runs the model in train mode, backpropagates the sum of
  the means of all outputs and clears the gradients (no optimizer);
* latency: ``--warmup`` untimed iterations, then the median (and min) of
  ``--iters`` timed ones (CUDA synchronised);
* peak memory: CPU: the process's peak resident set (``VmHWM``, reset via
  ``/proc/self/clear_refs`` after the model is built; ``ru_maxrss`` where
  that is unavailable), reported as total and as the increase over the
  resident set after building the model and input ("delta"). CUDA:
  ``torch.cuda.max_memory_allocated`` total and above the allocation after
  building the model.
* allocator (CPU): ``--allocator default`` runs the worker with glibc's
  default malloc settings; ``retain`` sets ``MALLOC_MMAP_MAX_=0`` and a huge
  ``MALLOC_TRIM_THRESHOLD_`` for it, so freed memory is kept and reused
  instead of being unmapped and page-faulted in again (on small VMs a fresh
  large tensor can cost more in page faults than the op that fills it).
  The setting applies to whatever model the worker runs; compare
  implementations under the same allocator. With ``retain`` the peak RSS
  also counts freed-but-kept memory.

Results are merged into a JSON file (one record per name/mode/shape/device)
and a markdown table next to it (``--out benchmarks/results.json``).
"""
import argparse
import datetime
import os
import os.path as osp

from .benchmarking import measure, merge_results
from .model_spec import (add_model_arguments, model_cfg, model_name,
                         parse_shape)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--mode', choices=['infer', 'train', 'both'],
                        default='both')
    parser.add_argument('--shape', type=parse_shape, default='1x3x800x1344',
                        help='inference input BxCxHxW')
    parser.add_argument('--train-shape', type=parse_shape,
                        default='2x3x512x512', help='training input BxCxHxW')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (0: torch default)')
    parser.add_argument('--allocator', choices=['default', 'retain'],
                        default='default', help='CPU malloc behaviour of '
                        'the worker (see above)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--iters', type=int, default=3)
    parser.add_argument('--timeout', type=float, default=3600,
                        help='seconds per measurement')
    parser.add_argument('--out', help='JSON file to merge results into; a '
                        '.md table is written next to it')
    parser.add_argument('--keep-best', action='store_true',
                        help='in --out, replace an existing record only by '
                        'a faster one (best of repeated runs)')
    args = parser.parse_args(argv)

    if not args.factory and not args.model:
        parser.error('give a model (type, config snippet or file) or '
                     '--factory FILE:FUNCTION')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda: no CUDA device is available here')
    if args.out:  # before measuring, so that no measurement is lost
        out_dir = osp.dirname(osp.abspath(args.out))
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as err:
            parser.error(f'--out {args.out}: cannot make {out_dir} ({err})')
        if not os.access(out_dir, os.W_OK):
            parser.error(f'--out {args.out}: {out_dir} is not writable')
    cfg = None if args.factory else model_cfg(args)
    name = model_name(args, cfg)
    modes = ['infer', 'train'] if args.mode == 'both' else [args.mode]
    records = []
    for mode in modes:
        shape = args.shape if mode == 'infer' else args.train_shape
        spec = dict(cfg=cfg, factory=args.factory, mode=mode, shape=shape,
                    device=args.device, threads=args.threads,
                    allocator=args.allocator, warmup=args.warmup,
                    iters=args.iters)
        try:
            result = measure(spec, args.timeout)
        except RuntimeError as err:  # the worker's last line says why
            last = (str(err).strip().splitlines() or [''])[-1]
            raise SystemExit(f'error: {name} ({mode}): {last} (in the '
                             'measuring worker)')
        record = dict(
            name=name, mode=mode, shape='x'.join(map(str, shape)),
            device=args.device, allocator=args.allocator,
            model=cfg or args.factory,
            date=datetime.datetime.now().isoformat(timespec='seconds'),
            **result)
        records.append(record)
        print(f"{name} {mode} {record['shape']} on {args.device} "
              f"({args.allocator} allocator): "
              f"{record['latency_s']:.3f} s (min {record['latency_min_s']:.3f}"
              f"), peak {record['peak_mem_mb']:.0f} MB "
              f"(+{record['peak_delta_mb']:.0f} MB over the built model)",
              flush=True)
    if args.out:
        merge_results(args.out, records, keep_best=args.keep_best)
        print(f'results merged into {args.out} and '
              f'{osp.splitext(args.out)[0]}.md')

