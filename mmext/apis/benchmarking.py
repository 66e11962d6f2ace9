"""The measuring side of ``tools/benchmark.py``: one measurement per fresh
interpreter (``python -m mmext.apis.benchmarking SPEC_JSON``), and the
merging of results into a JSON file with a markdown table next to it."""
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time

from mmext.utils.fileio import atomic_write
from .model_spec import build_model, run_step


def rss_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (0 where there is none)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def run_worker(spec: dict) -> dict:
    import torch
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    cuda = device.type == 'cuda'
    train = spec['mode'] == 'train'

    model = build_model(spec).to(device)
    model.train(train)
    x = torch.randn(*spec['shape'], device=device)

    def step():
        run_step(model, x, train)
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        hwm_reset = reset_peak_rss()
        base = rss_kb('VmRSS') * 1024

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
        peak = rss_kb('VmHWM') * 1024
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
        malloc_env={
            k: os.environ[k]
            for k in RETAIN_MALLOC_ENV if k in os.environ
        },
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


#: glibc settings of ``--allocator retain``: never serve an allocation by
#: mmap (so it is never unmapped on free) and never trim the heap
RETAIN_MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_TRIM_THRESHOLD_': str(2**62),
}


def measure(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter."""
    cmd = [sys.executable, '-m', 'mmext.apis.benchmarking', json.dumps(spec)]
    env = dict(os.environ)
    for key in RETAIN_MALLOC_ENV:
        env.pop(key, None)
    if spec.get('allocator') == 'retain':
        env.update(RETAIN_MALLOC_ENV)
    proc = subprocess.run(cmd,
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
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
    with atomic_write(path, 'w', force=True) as f:
        json.dump(merged, f, indent=1)
    with atomic_write(osp.splitext(path)[0] + '.md', 'w', force=True) as f:
        f.write(markdown_table(merged))
    return merged


def markdown_table(records) -> str:
    lines = [
        '| model | mode | input | device | allocator | threads | '
        'latency (s) | peak mem (MB) | peak delta (MB) | params | load |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in sorted(records,
                    key=lambda r: (r['device'], r.get('allocator', 'default'),
                                   r['mode'], r['shape'], r['name'])):
        lines.append(
            f"| {r['name']} | {r['mode']} | {r['shape']} | {r['device']} | "
            f"{r.get('allocator', 'default')} | {r['threads']} | "
            f"{r['latency_s']:.3f} | {r['peak_mem_mb']:.0f} "
            f"| {r['peak_delta_mb']:.0f} | {r['params'] / 1e6:.2f} M | "
            f"{r.get('load_avg_1min', float('nan')):.1f} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    print(json.dumps(run_worker(json.loads(sys.argv[1]))))
