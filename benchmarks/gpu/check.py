#!/usr/bin/env python
"""The GPU check of issue 17, one run, one JSON (``benchmarks/gpu/check.sh``
calls this on a CUDA machine).

    bash benchmarks/gpu/check.sh [OUT.json]                # on a GPU
    python benchmarks/gpu/check.py --device cpu --dry-run --out OUT.json

Steps (each recorded with its status; a failing step does not stop the
others; the exit status is 1 if one failed):

``env``
    torch / CUDA / GPU / mmcv versions, whether mmcv has CUDA ops (CARAFE).
``cuda_tests``
    ``pytest -m cuda``: the tests that are skipped without a GPU (the
    CARAFE path, CUDA fp16 autocast of every family, the AMP wrapper on a
    GPU); pass / fail / skip counts and the failing node ids.
``elsa_carafe``
    the ELSA filter's CARAFE path against its PyTorch path at ELSA-Swin-T's
    stage sizes (800x1344 input), forward and backward (v, attention,
    ghost matrix), float32 and float16 inputs; maximum relative errors and
    the time of each path.
``amp_training``
    ``tools/train.py`` on the tiny Mask R-CNN and UperNet of every family
    (the family's real config with its tiny arch, on generated demo data,
    2 iterations) with float16 AMP (the configs' ``AmpOptimWrapper``):
    exit status, losses finite, seconds.
``timing``
    DualViT-S, ELSA-Swin-T and mmdet's Swin-T backbones, inference
    1x3x800x1344 and training step 2x3x512x512 (forward + backward), float32
    and float16 autocast, in alternating rounds in this one process; median
    milliseconds, AMP / fp32 ratios, peak GPU memory
    (``max_memory_allocated`` above what the model and input hold).

``--device cpu --dry-run`` runs every step up to the CUDA calls: tiny
sizes, one round, ``pytest --collect-only``, the PyTorch filter against
the unfold reference, CPU autocast (bfloat16), and the training step of
each config in this process instead of ``tools/train.py``. Its JSON says
``"dry_run": true``; it is no GPU result.
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

STEPS = ('env', 'cuda_tests', 'elsa_carafe', 'amp_training', 'timing')
#: each family's real configs (their models, necks and heads are kept; the
#: backbone gets the tiny arch of tests/families.py)
REAL_CONFIGS = {
    'DualViT': ('dualvit_s_maskrcnn_1x.py',
                'dualvit_s_upernet_ade20k_160k.py'),
    'ELSASwin': ('elsa_swin_t_maskrcnn_1x.py',
                 'elsa_swin_t_upernet_ade20k_160k.py'),
    'AViT': ('avit_t_maskrcnn_1x.py', 'avit_t_upernet_ade20k_160k.py'),
    'ShuffleSwin': ('shuffle_swin_xtiny_maskrcnn_1x.py',
                    'shuffle_swin_xtiny_upernet_ade20k_160k.py'),
    'ShuffleViT': ('shuffle_deit_tiny_maskrcnn_1x.py',
                   'shuffle_deit_tiny_upernet_ade20k_160k.py'),
}
TIMED_BACKBONES = {
    'dualvit_s': ('mmext', dict(type='mmext.DualViT', arch='s')),
    'elsa_swin_t': ('mmext', dict(type='mmext.ELSASwin', arch='t')),
    'mmdet_swin_t': ('mmdet', dict(type='SwinTransformer')),  # Swin-T
}


class Settings:
    """Sizes and rounds of a real run and of a dry run."""

    def __init__(self, device: str, dry_run: bool):
        self.device = device
        self.dry_run = dry_run
        self.amp_dtype = torch.float16 if device == 'cuda' else \
            torch.bfloat16
        self.infer_shape = (1, 3, 64, 96) if dry_run else (1, 3, 800, 1344)
        self.train_shape = (1, 3, 64, 64) if dry_run else (2, 3, 512, 512)
        self.rounds = 1 if dry_run else 10
        self.warmup = 1 if dry_run else 3
        # ELSA-Swin-T stages 0-2 at 800x1344: (channels, heads, H, W)
        self.elsa_stages = [(8, 2, 12, 10)] if dry_run else [
            (96, 3, 200, 336), (192, 6, 100, 168), (384, 12, 50, 84)
        ]


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def rel_err(a, b) -> float:
    return ((a.double() - b.double()).abs().max() /
            b.double().abs().max()).item()


# -- steps -------------------------------------------------------------------
def step_env(s: Settings) -> dict:
    import mmcv
    import mmdet
    import mmengine
    import mmseg

    from mmext.ops import carafe_available
    info = dict(torch=torch.__version__, cuda=torch.version.cuda,
                mmcv=mmcv.__version__, mmengine=mmengine.__version__,
                mmdet=mmdet.__version__, mmseg=mmseg.__version__,
                python=platform.python_version(),
                carafe=carafe_available()[0],
                carafe_reason=carafe_available()[1])
    if s.device == 'cuda':
        info.update(gpu=torch.cuda.get_device_name(),
                    gpu_memory_gib=torch.cuda.get_device_properties(
                        0).total_memory / 2**30,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return info


def step_cuda_tests(s: Settings) -> dict:
    cmd = [sys.executable, '-m', 'pytest', '-m', 'cuda', '-q', '-rfs',
           '-p', 'no:cacheprovider', *s.test_paths]
    if s.dry_run:
        cmd.append('--collect-only')
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=3600)
    out = proc.stdout
    counts = {k: int(v) for v, k in re.findall(
        r'(\d+) (passed|failed|skipped|error|errors|deselected|selected)',
        out.splitlines()[-1] if out.strip() else '')}
    if s.dry_run:
        collected = [ln for ln in out.splitlines() if '::' in ln]
        return dict(ok=proc.returncode == 0 and bool(collected),
                    collected=collected, counts=counts)
    return dict(ok=proc.returncode == 0 and counts.get('passed', 0) > 0,
                returncode=proc.returncode, counts=counts,
                failed=re.findall(r'^FAILED (\S+)', out, re.M),
                skipped=re.findall(r'^SKIPPED .*', out, re.M),
                tail=out[-3000:] if proc.returncode else '')


def step_elsa_carafe(s: Settings) -> dict:
    """CARAFE vs PyTorch path on CUDA; PyTorch path vs the unfold
    reference in a dry run."""
    from mmext.ops import elsa_filter, elsa_filter_unfold

    def run(path, v, attn, ghost):
        inputs = [t.detach().requires_grad_() for t in (v, attn, ghost)]
        sync(s.device)
        start = time.perf_counter()
        if path == 'unfold':
            out = elsa_filter_unfold(*inputs, kernel_size=7)
        else:
            out = elsa_filter(*inputs, impl=path)
        weight = torch.linspace(-1, 1, out.numel(), device=out.device)
        (out.float() * weight.view_as(out)).sum().backward()
        sync(s.device)
        return out.detach(), [t.grad for t in inputs], \
            time.perf_counter() - start

    paths = ('pytorch', 'unfold') if s.dry_run else ('carafe', 'pytorch')
    rows = []
    for channels, heads, h, w in s.elsa_stages:
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(1, channels, h, w, generator=gen)
        attn = torch.randn(1, heads, 49, h, w, generator=gen).softmax(2)
        attn = attn.view(1, heads * 49, h, w)
        ghost = torch.randn(channels, 7, 7, generator=gen) * 0.02
        for dtype in (torch.float32, torch.float16):
            args = [t.to(s.device) for t in (v.to(dtype), attn.to(dtype))]
            args.append(ghost.to(s.device))  # a float32 parameter
            run(paths[0], *args)  # warm-up
            (out_a, grads_a, t_a), (out_b, grads_b, t_b) = (
                run(p, *args) for p in paths)
            rows.append(dict(
                shape=[1, channels, h, w], heads=heads, dtype=str(dtype),
                paths=paths, forward_rel_err=rel_err(out_a, out_b),
                grad_rel_err=dict(zip(('v', 'attn', 'ghost_add'), (
                    rel_err(a, b) for a, b in zip(grads_a, grads_b)))),
                seconds={paths[0]: t_a, paths[1]: t_b},
                out_dtype=str(out_a.dtype)))
    worst = max(max(r['forward_rel_err'], *r['grad_rel_err'].values())
                for r in rows)
    # float32 sums on both paths: float16 inputs give at most a few ulps
    return dict(ok=worst < 1e-2, worst_rel_err=worst, rows=rows)


def _family_cfg(family, task, demo_root, work_dir):
    """The family's real detection / segmentation model made tiny
    (tests/tiny_configs.py) on the demo data and schedule of the pipeline
    tests (tests/pipeline/pipeline_utils.py: 128 px, 2 iterations), with
    float16 AMP (the tests' helpers train in float32)."""
    from mmengine.config import Config

    from tests.pipeline.pipeline_utils import tiny_det_cfg, tiny_seg_cfg
    from tests.tiny_configs import tiny_config
    det = task == 'det'
    real = osp.join(REPO, 'configs', 'detection' if det else 'segmentation',
                    REAL_CONFIGS[family.type][0 if det else 1])
    work = osp.join(work_dir, f'{family.type}_{task}')
    path = (tiny_det_cfg if det else tiny_seg_cfg)(demo_root, work)
    cfg = Config.fromfile(path)
    model = tiny_config(real).model
    model.data_preprocessor = cfg.model.data_preprocessor  # demo crop size
    cfg.model = model
    cfg.optim_wrapper.dtype = 'float16'  # bfloat16 where there is no GPU
    cfg.dump(path)
    return path, work


def _train_in_process(cfg_path) -> dict:
    """One training step of the config, as the runner would take it."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    from mmext.apis.launch import adapt_cfg_to_device
    cfg = Config.fromfile(cfg_path)
    adapt_cfg_to_device(cfg)
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in range(2)])
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    log = model.train_step(batch, wrapper)
    return dict(losses=[float(log['loss'])], wrapper=type(wrapper).__name__,
                autocast_dtype=str(getattr(wrapper, 'cast_dtype', None)))


def step_amp_training(s: Settings) -> dict:
    from mmext.datasets.demo import make_demo_data
    from tests.families import FAMILIES
    from tests.pipeline.pipeline_utils import tool
    work_dir = tempfile.mkdtemp(prefix='gpu_check_')
    demo_root = make_demo_data(osp.join(work_dir, 'demo'),
                               splits=dict(train=8, val=4))
    runs = []
    for family in FAMILIES:
        if family.type not in s.families:
            continue
        for task in ('det', 'seg'):
            cfg, work = _family_cfg(family, task, demo_root, work_dir)
            start = time.time()
            row = dict(family=family.type, task=task)
            try:
                if s.dry_run:
                    row.update(_train_in_process(cfg))
                else:
                    code, out = tool('train.py', cfg, '--work-dir', work,
                                     '--cfg-options',
                                     'train_cfg.val_begin=1000000',
                                     check=False, timeout=1200)
                    row.update(returncode=code, losses=[
                        float(v) for v in re.findall(
                            r'(?:Epoch|Iter)\(train\).*?\sloss: (\S+)', out)
                    ], log_tail=out[-2000:] if code else '')
                row['ok'] = row.get('returncode', 0) == 0 and bool(
                    row['losses']) and all(
                        math.isfinite(v) for v in row['losses'])
            except Exception:  # noqa: BLE001 - recorded, next config
                row.update(ok=False, error=traceback.format_exc()[-2000:])
            row['seconds'] = time.time() - start
            runs.append(row)
            print(json.dumps({k: row[k] for k in ('family', 'task', 'ok')}),
                  flush=True)
    return dict(ok=bool(runs) and all(r['ok'] for r in runs),
                amp_dtype=str(s.amp_dtype), runs=runs)


def _build_backbone(scope, cfg, device):
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        import mmext.models  # noqa: F401
        from mmext.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(dict(cfg, init_cfg=None)).to(device)


def _one_step(model, x, train, dtype, device):
    from mmext.apis.model_spec import run_step
    with torch.autocast(device, dtype=dtype or torch.float16,
                        enabled=dtype is not None):
        run_step(model, x, train)


def step_timing(s: Settings) -> dict:
    precisions = {'fp32': None, 'amp': s.amp_dtype}
    rows = []
    for name in s.timed:
        scope, cfg = TIMED_BACKBONES[name]
        model = _build_backbone(scope, cfg, s.device)
        for mode, shape in (('infer', s.infer_shape),
                            ('train', s.train_shape)):
            train = mode == 'train'
            model.train(train)
            x = torch.randn(*shape, device=s.device)
            peak = {}
            for p, dtype in precisions.items():
                for _ in range(s.warmup):
                    _one_step(model, x, train, dtype, s.device)
                if s.device == 'cuda':
                    sync(s.device)
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    _one_step(model, x, train, dtype, s.device)
                    sync(s.device)
                    peak[p] = (torch.cuda.max_memory_allocated() -
                               base) / 2**20
            times = {p: [] for p in precisions}
            order = list(precisions)
            for r in range(s.rounds):
                for p in (order if r % 2 == 0 else order[::-1]):
                    sync(s.device)
                    start = time.perf_counter()
                    _one_step(model, x, train, precisions[p], s.device)
                    sync(s.device)
                    times[p].append((time.perf_counter() - start) * 1e3)
            median = {p: statistics.median(v) for p, v in times.items()}
            rows.append(dict(
                model=name, mode=mode, shape=list(shape), median_ms=median,
                amp_over_fp32=statistics.median(
                    a / f for a, f in zip(times['amp'], times['fp32'])),
                peak_mem_mb=peak or None, times_ms=times))
            print(json.dumps({k: rows[-1][k] for k in
                              ('model', 'mode', 'median_ms')}), flush=True)
        del model
        if s.device == 'cuda':
            torch.cuda.empty_cache()
    return dict(ok=True, amp_dtype=str(s.amp_dtype), rounds=s.rounds,
                rows=rows)


# -- driver ------------------------------------------------------------------
def main(argv=None) -> int:
    from tests.families import FAMILIES
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--dry-run', action='store_true',
                        help='tiny sizes, no CUDA calls (with --device cpu)')
    parser.add_argument('--steps', nargs='+', default=list(STEPS),
                        choices=STEPS)
    parser.add_argument('--families', nargs='+',
                        default=[f.type for f in FAMILIES],
                        choices=[f.type for f in FAMILIES])
    parser.add_argument('--test-paths', nargs='+', default=['tests'],
                        help='where pytest -m cuda looks (default: tests)')
    parser.add_argument('--timed', nargs='+', default=list(TIMED_BACKBONES),
                        choices=list(TIMED_BACKBONES))
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('no GPU: torch.cuda.is_available() is False; nothing to check')
        return 0
    if args.device == 'cpu' and not args.dry_run:
        parser.error('--device cpu runs only with --dry-run')
    from mmext.utils.fileio import atomic_write
    s = Settings(args.device, args.dry_run)
    s.families, s.test_paths, s.timed = (args.families, args.test_paths,
                                         args.timed)
    record = dict(dry_run=args.dry_run, device=args.device,
                  started=time.strftime('%Y-%m-%d %H:%M:%S'),
                  load_avg_1min=os.getloadavg()[0], steps={})
    for name in args.steps:
        start = time.time()
        try:
            result = globals()[f'step_{name}'](s)
            result.setdefault('ok', True)
        except Exception:  # noqa: BLE001 - recorded, next step
            result = dict(ok=False, error=traceback.format_exc()[-3000:])
        result['seconds'] = time.time() - start
        record['steps'][name] = result
        print(f'[gpu check] {name}: {"ok" if result["ok"] else "FAILED"} '
              f'({result["seconds"]:.0f} s)', flush=True)
        with atomic_write(args.out, 'w', force=True) as f:
            json.dump(record, f, indent=1)
    record['ok'] = all(r['ok'] for r in record['steps'].values())
    with atomic_write(args.out, 'w', force=True) as f:
        json.dump(record, f, indent=1)
    print(f'[gpu check] {"all steps ok" if record["ok"] else "FAILED"}; '
          f'results in {args.out}')
    return 0 if record['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
