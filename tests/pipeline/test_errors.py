"""Bad input stops early with an error that names the problem and the fix."""
import os.path as osp
import sys

import pytest
import torch

from mmext.apis import benchmark as bench_tool
from mmext.apis import convert as convert_tool
from mmext.apis import flops as flops_tool
from mmext.apis import test as test_tool
from mmext.apis import train
from mmext.errors import ConfigError
from tests.pipeline.pipeline_utils import REPO, tiny_seg_cfg, tool
from tests.pipeline.pipeline_utils import fails as _fails
from tests.pipeline.pipeline_utils import \
    log_to_current_stdout as _log_to_current_stdout

DET_1X = osp.join(REPO, 'configs/detection/dualvit_s_maskrcnn_1x.py')
SEG_S = osp.join(REPO, 'configs/segmentation/dualvit_s_upernet_ade20k_160k.py')


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Runners built here in-process set mmengine's current default scope
    (mmseg); later tests that build ``type='DualViT'`` unscoped would then
    look in the wrong registry."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


def _setup(argv):
    return train.setup_cfg(train.parse_args(argv))


def test_missing_pretrained_says_how_to_convert(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _setup([DET_1X, '--work-dir', str(tmp_path)])
    msg = str(err.value)
    assert 'checkpoints/dualvit_s_in1k.pth' in msg
    assert 'python tools/convert_imagenet.py dualvit' in msg
    assert 'model.backbone.init_cfg=None' in msg


def test_missing_coco_says_where_data_goes(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _setup([
            DET_1X, '--work-dir',
            str(tmp_path), '--cfg-options', 'model.backbone.init_cfg=None',
            f'train_dataloader.dataset.data_root={tmp_path}/nowhere/coco/'
        ])
    msg = str(err.value)
    assert 'nowhere/coco' in msg and 'data_root' in msg
    assert 'data/coco/' in msg and 'instances_' in msg


def test_missing_ade_says_where_data_goes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(FileNotFoundError) as err:
        _setup([SEG_S, '--cfg-options', 'model.backbone.init_cfg=None'])
    msg = str(err.value)
    assert 'data/ade/ADEChallengeData2016' in msg
    assert 'ADEChallengeData2016.zip' in msg


def test_missing_demo_data_says_how_to_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        _setup([osp.join(REPO, 'configs/demo',
                         'dualvit_tiny_upernet_demo_400i.py')])
    assert 'python -m mmext.datasets.demo' in str(err.value)


def test_demo_configs_read_demo_data_from_one_variable(tmp_path, demo_root,
                                                       monkeypatch):
    monkeypatch.setenv('MMEXT_DEMO_DATA', demo_root)
    cfg = _setup([osp.join(REPO, 'configs/demo',
                           'dualvit_tiny_maskrcnn_demo_12e.py'),
                  '--work-dir', str(tmp_path)])
    assert cfg.train_dataloader.dataset.data_root == f'{demo_root}/coco/'
    assert cfg.test_evaluator.ann_file.startswith(f'{demo_root}/coco/')


@pytest.mark.parametrize('option, expect', [
    ('model.backbone.archh=s', "takes no argument 'archh'"),
    ('model.bakbone.arch=s', "takes no argument 'bakbone'"),
    ('optim_wraper.optimizer.lr=0.1', "no top-level key 'optim_wraper'"),
    ('model.decode_head.pool_scales.7=1', 'is not an index'),
    ('train_cfg.max_itres=5', "takes no argument 'max_itres'"),
    ('trian_dataloader=1', "no top-level key 'trian_dataloader'"),
    ('train_dataloader.dataset.pipeline.9.scale=1', 'is not an index'),
    # dataloader dicts have no type, and CheckpointHook takes **kwargs
    ('train_dataloader.batch_sise=2', "takes no key 'batch_sise'"),
    ('default_hooks.checkpoint.intervall=1',
     "takes no argument 'intervall'"),
    ('randomness.sed=1', "takes no key 'sed'"),
    ('env_cfg.mp_cfg.mp_start_methd=fork', "takes no key 'mp_start_methd'"),
])
def test_unknown_config_key(option, expect, tmp_path):
    with pytest.raises(ConfigError) as err:
        _setup([SEG_S, '--work-dir', str(tmp_path), '--cfg-options', option])
    assert expect in str(err.value)


def test_close_match_is_suggested(tmp_path):
    with pytest.raises(ConfigError) as err:
        _setup([SEG_S, '--cfg-options', 'model.decode_head.chanels=256'])
    assert "Did you mean 'channels'" in str(err.value)


def test_known_keys_are_accepted(tmp_path, demo_root):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path))
    cfg = _setup([
        cfg, '--work-dir',
        str(tmp_path), '--cfg-options', 'model.backbone.drop_path_rate=0.1',
        'randomness.seed=1', 'train_cfg.val_begin=3',
        'model.test_cfg.mode=whole', 'optim_wrapper.clip_grad.max_norm=1'
    ])
    assert cfg.model.backbone.drop_path_rate == 0.1
    # no GPU: bfloat16 autocast, off here (the tests' dtype='float32')
    assert cfg.optim_wrapper.type == 'mmext.DeviceAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'float32'


def test_cli_prints_a_clean_error(tmp_path):
    code, out = tool('train.py', SEG_S, '--work-dir', str(tmp_path),
                     '--cfg-options', 'model.backbone.archh=s', check=False)
    assert code != 0
    assert "takes no argument 'archh'" in out
    assert 'Traceback' not in out


def test_test_tool_checks_checkpoint_and_tta(tmp_path, demo_root):
    with pytest.raises(FileNotFoundError, match='checkpoint to test'):
        test_tool.setup_cfg(test_tool.parse_args([SEG_S, 'missing.pth']))
    ckpt = tmp_path / 'x.pth'
    torch.save({'state_dict': {}}, ckpt)
    # an upstream Mask R-CNN config has no TTA; the error names our base
    no_tta = tmp_path / 'mask_rcnn_no_tta.py'
    no_tta.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'")
    with pytest.raises(ConfigError,
                       match='no tta_model.*_base_/instance_tta.py'):
        test_tool.setup_cfg(
            test_tool.parse_args([
                str(no_tta),
                str(ckpt), '--tta', '--work-dir',
                str(tmp_path)
            ]))


def test_amp_and_auto_scale_lr_flags(tmp_path, demo_root):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path))
    out = _setup([cfg, '--amp', '--auto-scale-lr', '--work-dir',
                  str(tmp_path)])
    assert out.auto_scale_lr == dict(enable=True, base_batch_size=16)
    # no GPU here: bfloat16 autocast on the CPU (the loss scale is unused)
    assert out.optim_wrapper.type == 'mmext.DeviceAmpOptimWrapper'
    assert out.env_cfg.dist_cfg.backend == 'gloo'


# --------------------------------------------------------------------------
# every bad input through the tools' real entry points: exit status 1, one
# line on stderr naming the file and the fix, nothing half-written
# --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def seg_states(demo_root, tmp_path_factory):
    """The tiny segmentor's config, and checkpoints: its own, one of the
    same with a narrower head (another config) and its backbone alone (a
    converted checkpoint)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmext.models  # noqa: F401
    folder = tmp_path_factory.mktemp('seg_states')
    files = {'cfg': tiny_seg_cfg(demo_root, str(folder))}
    cfg = Config.fromfile(files['cfg'])
    for name, channels in (('same', 128), ('other', 96)):
        cfg.model.decode_head.channels = channels
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmseg'):
            model = MODELS.build(cfg.model)
        files[name] = folder / f'{name}.pth'
        torch.save({'state_dict': model.state_dict(),
                    'meta': dict(epoch=0, iter=2)}, files[name])
    files['backbone'] = folder / 'backbone.pth'
    torch.save({'state_dict': {k[len('backbone.'):]: v for k, v in
                               model.state_dict().items()
                               if k.startswith('backbone.')},
                'meta': dict(arch='custom')}, files['backbone'])
    return files


def test_config_with_syntax_error_is_named(tmp_path, capsys):
    cfg = tmp_path / 'broken.py'
    cfg.write_text("_base_ = 'x.py'\nmodel = dict(\n    type='A',,\n)\n")
    line = _fails(train, [cfg, '--work-dir', tmp_path / 'w'], capsys)
    assert f'{cfg} has a syntax error at line 3' in line
    assert not (tmp_path / 'w').exists()
    line = _fails(train, [tmp_path, '--work-dir', tmp_path / 'w'], capsys)
    assert 'is a folder' in line


def test_truncated_annotation_file_is_named(tmp_path, capsys, demo_root):
    import shutil
    data = tmp_path / 'demo' / 'coco'
    shutil.copytree(osp.join(demo_root, 'coco'), data)
    ann = data / 'annotations' / 'instances_train.json'
    ann.write_bytes(ann.read_bytes()[:1000])
    from tests.pipeline.pipeline_utils import tiny_det_cfg
    cfg = tiny_det_cfg(demo_root, str(tmp_path))
    line = _fails(train, [
        cfg, '--work-dir', tmp_path / 'w', '--cfg-options',
        f'train_dataloader.dataset.data_root={data}/'
    ], capsys)
    assert str(ann) in line and 'not complete JSON' in line
    assert 'make it with' in line  # the demo data: how to regenerate it
    assert not (tmp_path / 'w').exists()


def test_resume_from_a_converted_checkpoint(tmp_path, capsys, demo_root,
                                            seg_states):
    cfg = seg_states['cfg']
    line = _fails(train, [cfg, '--work-dir', tmp_path / 'w', '--resume',
                          seg_states['backbone']], capsys)
    assert f'{seg_states["backbone"]} is not a training checkpoint' in line
    assert 'load_from=' in line


@pytest.mark.parametrize('kind, use, expect', [
    ('empty', 'test', 'is empty (0 bytes)'),
    ('text', 'resume', 'is a text file'),
    ('folder', 'load_from', 'is a folder'),
    ('truncated', 'pretrained', 'is truncated'),
])
def test_bad_checkpoint_files(kind, use, expect, tmp_path, capsys, demo_root,
                              seg_states):
    # every kind of bad file for every reader: tests/utils/
    # test_checkpoint_files.py; here each reader through its tool
    bad = tmp_path / 'bad.pth'
    if kind == 'empty':
        bad.write_bytes(b'')
    elif kind == 'text':
        bad.write_text('mAP 41.2\n')
    elif kind == 'folder':
        bad.mkdir()
    else:
        bad.write_bytes(seg_states['same'].read_bytes()[:4000])
    cfg = seg_states['cfg']
    work = tmp_path / 'w'
    tool_module, argv = {
        'test': (test_tool, [cfg, bad, '--work-dir', work]),
        'resume': (train, [cfg, '--work-dir', work, '--resume', bad]),
        'load_from': (train, [cfg, '--work-dir', work, '--cfg-options',
                              f'load_from={bad}']),
        'pretrained': (train, [tiny_seg_cfg(demo_root, str(tmp_path), **{
            'model.backbone.init_cfg': dict(_delete_=True, type='Pretrained',
                                            checkpoint=str(bad))
        }), '--work-dir', work]),
    }[use]
    line = _fails(tool_module, argv, capsys)
    assert str(bad) in line and expect in line, line
    assert not work.exists()


def test_checkpoint_of_another_config_is_refused(tmp_path, capsys,
                                                 demo_root, seg_states):
    cfg = seg_states['cfg']
    for name, counts in (('other', '61 of another shape'),
                         ('backbone', "the model's 'backbone' alone")):
        work = tmp_path / name
        line = _fails(test_tool, [cfg, seg_states[name], '--work-dir', work],
                      capsys)
        assert f'checkpoint {seg_states[name]} does not fit the model' \
            in line and counts in line and '--allow-mismatch' in line
        assert not list(work.glob('*/test_metrics.json'))
    # on request it is tested anyway
    metrics = test_tool.main([cfg, str(seg_states['other']), '--work-dir',
                              str(tmp_path / 'allowed'),
                              '--allow-mismatch'])
    assert 'mIoU' in metrics
    assert list((tmp_path / 'allowed').glob('*/test_metrics.json'))


def test_output_paths_are_checked_first(tmp_path, capsys, demo_root,
                                        seg_states):
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    cfg = seg_states['cfg']
    line = _fails(train, [cfg, '--work-dir', a_file], capsys)
    assert 'work dir' in line and 'is a file' in line
    line = _fails(test_tool, [cfg, seg_states['same'], '--work-dir',
                              tmp_path / 'w', '--out', a_file / 'preds'],
                  capsys)
    assert '--out' in line and 'is a file' in line
    assert not (tmp_path / 'w').exists()


def test_convert_tool_errors(tmp_path, capsys):
    text = tmp_path / 'notes.pth'
    text.write_text('downloaded from the project page\n')
    dst = tmp_path / 'out.pth'
    line = _fails(convert_tool, ['dualvit', text, dst], capsys)
    assert f'{text} is a text file' in line and not dst.exists()
    # DST is checked before SRC is read (here SRC does not even exist)
    blocked = tmp_path / 'file.txt'
    blocked.write_text('x')
    line = _fails(convert_tool, ['dualvit', tmp_path / 'missing.pth',
                                 blocked / 'out.pth'], capsys)
    assert 'DST' in line and 'is a file' in line
    line = _fails(convert_tool, ['dualvit', text, dst, '--arch',
                                 "{'depths': [1, 1, 1, 1]}"], capsys)
    assert 'is not valid JSON' in line and 'double quotes' in line


@pytest.mark.parametrize('argv, expect', [
    (['NoSuchNet', '--shape', '1x3x32x32'], 'NoSuchNet'),
    (['DualViT', '--arch', 'xxl', '--shape', '1x3x32x32'], 'xxl'),
])
def test_get_flops_unknown_model_or_arch(argv, expect, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        flops_tool.main(argv)
    assert str(exit_.value.code).startswith('error: cannot build')
    assert expect in str(exit_.value.code)
    assert '\n' not in str(exit_.value.code)


def test_benchmark_out_is_checked_before_measuring(tmp_path, capsys):
    blocked = tmp_path / 'file.txt'
    blocked.write_text('x')
    with pytest.raises(SystemExit) as exit_:
        bench_tool.main(['DualViT', '--arch', 's', '--out',
                         str(blocked / 'results.json')])
    assert exit_.value.code == 2
    assert 'cannot make' in capsys.readouterr().err


def test_benchmark_out_folder_is_made_before_measuring(tmp_path,
                                                       monkeypatch):
    out = tmp_path / 'new' / 'results.json'

    def measure(spec, timeout):  # the measurement itself is not tested here
        assert out.parent.is_dir()
        if spec['mode'] == 'train':
            raise RuntimeError('measurement failed (exit 1):\nKeyError: x')
        return dict(latency_s=1.0, latency_min_s=1.0, peak_mem_mb=1.0,
                    peak_delta_mb=1.0, params=1, threads=1)

    monkeypatch.setattr(bench_tool, 'measure', measure)
    bench_tool.main(['DualViT', '--arch', 's', '--mode', 'infer', '--out',
                     str(out)])
    assert out.is_file() and out.with_suffix('.md').is_file()
    with pytest.raises(SystemExit) as exit_:
        bench_tool.main(['DualViT', '--arch', 's', '--mode', 'train'])
    assert exit_.value.code == ('error: mmext.DualViT-s (train): KeyError: '
                                'x (in the measuring worker)')


def test_one_line_from_a_real_process(tmp_path):
    """The same errors through the interpreter, as a user meets them (the
    cases that fail before anything heavy is imported, run side by side;
    tools/train.py with a wrong key: test_cli_prints_a_clean_error)."""
    import subprocess
    from tests.pipeline.pipeline_utils import tool_env
    text = tmp_path / 'notes.pth'
    text.write_text('not weights\n')
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    runs = {
        'convert_imagenet.py': (['dualvit', text, tmp_path / 'out.pth'],
                                'is a text file'),
        'train.py': ([broken, '--work-dir', tmp_path / 'w'],
                     'has a syntax error at line'),
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, osp.join(REPO, 'tools', name), *map(str, argv)],
            cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        for name, (argv, _) in runs.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (name, err)
        lines = [line for line in err.splitlines() if 'error:' in line]
        assert len(lines) == 1 and runs[name][1] in lines[0], (name, err)
        assert 'Traceback' not in err, (name, err)
    assert not (tmp_path / 'out.pth').exists()
    assert not (tmp_path / 'w').exists()


def test_resume_without_any_checkpoint_says_it_starts_over(tmp_path, capsys,
                                                           seg_states):
    _log_to_current_stdout()
    capsys.readouterr()
    cfg = _setup([seg_states['cfg'], '--work-dir', str(tmp_path / 'w'),
                  '--resume'])
    assert not cfg.resume and cfg.load_from is None
    assert f'--resume: no checkpoint in {tmp_path / "w"}; training starts ' \
        'from scratch' in capsys.readouterr().out


def test_failure_inside_the_run_names_the_file_and_logs_the_traceback(
        tmp_path, capsys, demo_root, seg_states):
    import shutil
    data = tmp_path / 'ade'
    shutil.copytree(osp.join(demo_root, 'ade'), data)
    broken = sorted((data / 'images' / 'validation').iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:200])  # a cut-off JPEG
    work = tmp_path / 'w'
    line = _fails(test_tool, [
        seg_states['cfg'], seg_states['same'], '--work-dir', work,
        '--cfg-options', f'test_dataloader.dataset.data_root={data}'
    ], capsys)
    assert f'error: {broken} cannot be decoded (a JPEG cut short)' in line
    log = next(work.glob('*/*.log'))
    assert 'Traceback (most recent call last)' in log.read_text()
    assert not list(work.glob('*/test_metrics.json'))


def test_resume_with_nothing_usable_stops(tmp_path, capsys, seg_states):
    work = tmp_path / 'w'
    work.mkdir()
    # what mmengine's own hook left when killed in its first save
    (work / 'iter_2.pth').write_bytes(b'PK\x03\x04 cut short')
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    line = _fails(train, [seg_states['cfg'], '--work-dir', work, '--resume'],
                  capsys)
    assert f'--resume: nothing usable in {work}' in line
    assert 'iter_2.pth is incomplete' in line
    assert 'start over without --resume' in line
