#!/usr/bin/env python
"""Latency and peak memory of a backbone: inference (forward) and a training
step (forward + backward), on CPU or CUDA.

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
import ast
import datetime
import importlib.util
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional

# ---------------------------------------------------------------------------
# worker: runs one measurement in its own process


def _rss_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _build_model(spec: dict):
    import torch.nn as nn

    # imported for factories too, so that every worker starts from the same
    # resident baseline (the libraries weigh ~100 MB of RSS)
    import mmext.models  # noqa: F401
    from mmengine.registry import MODELS
    if spec.get('factory'):
        path, _, func = spec['factory'].rpartition(':')
        module_spec = importlib.util.spec_from_file_location(
            'bench_factory', path)
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, osp.dirname(osp.abspath(path)))
        module_spec.loader.exec_module(module)
        model = getattr(module, func)()
    else:
        cfg = dict(spec['cfg'])
        model = MODELS.build(cfg)
        if hasattr(model, 'init_weights'):
            model.init_weights()
    if not isinstance(model, nn.Module):
        raise TypeError(f'built object is a {type(model)}, not a Module')
    return model


def run_worker(spec: dict) -> dict:
    import torch

    from mmext.utils.complexity import iter_tensors
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    cuda = device.type == 'cuda'
    train = spec['mode'] == 'train'

    model = _build_model(spec).to(device)
    model.train(train)
    x = torch.randn(*spec['shape'], device=device)

    def step():
        if train:
            out = model(x)
            loss = sum(t.float().mean() for t in iter_tensors(out))
            loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(x)
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        hwm_reset = _reset_peak_rss()
        base = _rss_kb('VmRSS') * 1024

    for _ in range(spec['warmup']):
        step()
    times, cpu_times = [], []
    for _ in range(spec['iters']):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)

    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        mem_method = 'torch.cuda.max_memory_allocated'
    elif hwm_reset:
        peak = _rss_kb('VmHWM') * 1024
        mem_method = 'VmHWM after clear_refs reset'
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        mem_method = 'ru_maxrss (includes model build)'
    params = sum(p.numel() for p in model.parameters())
    return dict(
        latency_s=statistics.median(times),
        latency_min_s=min(times),
        times_s=times,
        # CPU seconds of the process per iteration: with other jobs on the
        # machine, wall time grows but this stays about the same
        cpu_time_s=statistics.median(cpu_times),
        load_avg_1min=os.getloadavg()[0],
        peak_mem_mb=peak / 2**20,
        peak_delta_mb=(peak - base) / 2**20,
        mem_method=mem_method,
        params=params,
        threads=torch.get_num_threads(),
        malloc_env={k: os.environ[k]
                    for k in RETAIN_MALLOC_ENV if k in os.environ},
        torch=torch.__version__,
        device_name=(torch.cuda.get_device_name(device)
                     if cuda else _cpu_name()))


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip() + \
                        f' ({os.cpu_count()} cpus)'
    except OSError:
        pass
    return platform.processor() or 'cpu'


# ---------------------------------------------------------------------------
# driver


def _parse_shape(text: str):
    try:
        shape = [int(v) for v in text.lower().split('x')]
    except ValueError:
        shape = []
    if len(shape) != 4 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f'shape must look like 1x3x800x1344 (BxCxHxW), got {text!r}')
    return shape


def _literal(text: str):
    """A Python literal where ``dict(a=1, ...)`` calls are allowed too (as
    in config files); nothing is executed."""

    def convert(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == 'dict' and not node.args:
            return {kw.arg: convert(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Dict):
            return {convert(k): convert(v)
                    for k, v in zip(node.keys, node.values)}
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [convert(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        return ast.literal_eval(node)

    return convert(ast.parse(text.strip(), mode='eval').body)


def _model_cfg(args) -> dict:
    model = args.model
    if model.endswith('.py') and osp.isfile(model):
        from mmengine.config import Config
        cfg = Config.fromfile(model)
        node = cfg
        for part in args.cfg_key.split('.'):
            node = node[part]
        cfg = dict(node.to_dict() if hasattr(node, 'to_dict') else node)
        if cfg.pop('init_cfg', None) is not None:
            # a config's pretrained file need not exist here, and weights
            # change neither timings nor MAC counts
            print(f'{model}: ignoring {args.cfg_key}.init_cfg (random '
                  'weights)', file=sys.stderr)
    elif model.lstrip().startswith(('dict(', '{')):
        try:
            cfg = json.loads(model)
        except json.JSONDecodeError:
            cfg = _literal(model)
        if not isinstance(cfg, dict):
            raise SystemExit(f'the model snippet is not a dict: {model}')
    else:
        cfg = dict(type=model if '.' in model else f'mmext.{model}')
    if args.arch is not None:
        cfg['arch'] = args.arch
    for item in args.set or []:
        key, _, value = item.partition('=')
        try:
            cfg[key] = _literal(value)
        except (ValueError, SyntaxError):
            cfg[key] = value  # a bare string
    if 'type' not in cfg:
        raise SystemExit('the model config has no "type"')
    return cfg


#: glibc settings of ``--allocator retain``: never serve an allocation by
#: mmap (so it is never unmapped on free) and never trim the heap
RETAIN_MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_TRIM_THRESHOLD_': str(2**62),
}


def measure(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter."""
    cmd = [sys.executable, osp.abspath(__file__), '--worker', json.dumps(spec)]
    env = dict(os.environ)
    for key in RETAIN_MALLOC_ENV:
        env.pop(key, None)
    if spec.get('allocator') == 'retain':
        env.update(RETAIN_MALLOC_ENV)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
    if proc.returncode or not lines:
        raise RuntimeError(f'measurement failed (exit {proc.returncode}):\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(lines[-1])


def _key(r):
    return (r['name'], r['mode'], r['shape'], r['device'],
            r.get('allocator', 'default'))


def merge_results(path: str, records, keep_best: bool = False):
    """Merge into the JSON at ``path``: a new record replaces the old one of
    the same name/mode/shape/device/allocator, or with ``keep_best`` only
    if it is faster (best-of-N over repeated runs on a busy machine)."""
    old = []
    if osp.exists(path):
        with open(path) as f:
            old = json.load(f)
    kept = {_key(r): r for r in old}
    for r in records:
        prev = kept.get(_key(r))
        if keep_best and prev and prev['latency_s'] <= r['latency_s']:
            continue
        kept[_key(r)] = r
    merged = list(kept.values())
    from mmext.utils.fileio import atomic_write
    with atomic_write(path, 'w', force=True) as f:
        json.dump(merged, f, indent=1)
    with open(osp.splitext(path)[0] + '.md', 'w') as f:
        f.write(markdown_table(merged))
    return merged


def markdown_table(records) -> str:
    lines = [
        '| model | mode | input | device | allocator | threads | '
        'latency (s) | peak mem (MB) | peak delta (MB) | params | load |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in sorted(records, key=lambda r: (
            r['device'], r.get('allocator', 'default'), r['mode'],
            r['shape'], r['name'])):
        lines.append(
            f"| {r['name']} | {r['mode']} | {r['shape']} | {r['device']} | "
            f"{r.get('allocator', 'default')} | {r['threads']} | "
            f"{r['latency_s']:.3f} | {r['peak_mem_mb']:.0f} "
            f"| {r['peak_delta_mb']:.0f} | {r['params'] / 1e6:.2f} M | "
            f"{r.get('load_avg_1min', float('nan')):.1f} |")
    return '\n'.join(lines) + '\n'


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model-spec arguments shared by benchmark.py, get_flops.py and
    benchmarks/profile_breakdown.py (see :func:`_model_cfg`)."""
    parser.add_argument('model', nargs='?', help='registered type (e.g. '
                        'DualViT), a dict(...) / JSON config snippet, or a '
                        'config file (with --cfg-key)')
    parser.add_argument('--arch', help='arch argument of the backbone')
    parser.add_argument('--set', nargs='*', metavar='KEY=VALUE',
                        help='more constructor arguments (Python literals)')
    parser.add_argument('--cfg-key', default='model.backbone',
                        help='where the backbone sits in a config file')
    parser.add_argument('--factory', help='FILE.py:FUNCTION returning the '
                        'module (instead of a registered model)')
    parser.add_argument('--name', help='label of the results (default: the '
                        'type and arch)')


def model_name(args, cfg: Optional[dict]) -> str:
    """``--name``, else the factory's function, else type and arch (a dict
    arch reads ``custom``)."""
    if args.name:
        return args.name
    if args.factory:
        return args.factory.rpartition(':')[2]
    arch = cfg.get('arch')
    if arch is None:
        return cfg['type']
    return f"{cfg['type']}-{arch if isinstance(arch, str) else 'custom'}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--mode', choices=['infer', 'train', 'both'],
                        default='both')
    parser.add_argument('--shape', type=_parse_shape, default='1x3x800x1344',
                        help='inference input BxCxHxW')
    parser.add_argument('--train-shape', type=_parse_shape,
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
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return

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
    cfg = None if args.factory else _model_cfg(args)
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
            raise SystemExit(f'error: {name} ({mode}): {last} (the worker '
                             'failed; run it with --mode and --iters 1 to '
                             'see its traceback)')
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


if __name__ == '__main__':
    main()
