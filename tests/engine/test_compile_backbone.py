"""``compile_backbone``: the config key, the hook, the tools' flag, and a
detector from a demo config whose compiled backbone predicts exactly what
the eager one does (dynamo's 'eager' backend: the wiring is under test
here; inductor's numerics in tests/models/backbones/test_compile.py)."""
import copy
import os.path as osp

import pytest
import torch
import torch._dynamo
from mmengine.config import Config

from mmext.engine.compile import (CompileBackboneHook, GraphCounter,
                                  compile_backbone, compile_backbone_hook,
                                  compile_options)
from mmext.errors import ConfigError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_DEMO = osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py')


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_options():
    assert compile_options(None) is None and compile_options(False) is None
    # torch 2.13's conv layout optimisation fails on Dual-ViT with dynamic
    # shapes: switched off unless the config sets it
    assert compile_options(True) == dict(
        options=dict(layout_optimization=False))
    assert compile_options(dict(dynamic=True, options=dict(
        layout_optimization=True)))['options'] == dict(
            layout_optimization=True)
    assert compile_options(dict(backend='eager')) == dict(backend='eager')
    with pytest.raises(ConfigError, match=r"unknown keys \['dynamc'\]"):
        compile_options(dict(dynamc=True))
    with pytest.raises(ConfigError, match='True/False or a dict'):
        compile_options('yes')
    cfg = Config(dict(compile=True, compile_backbone=True))
    with pytest.raises(ConfigError, match='keep one of them'):
        compile_backbone_hook(cfg)
    assert compile_backbone_hook(Config(dict())) is None
    assert isinstance(compile_backbone_hook(Config(dict(
        compile_backbone=dict(dynamic=True)))), CompileBackboneHook)


def test_no_backbone_is_an_error():
    with pytest.raises(ConfigError, match='has no backbone'):
        compile_backbone(torch.nn.Linear(2, 2))


def build_detector():
    from mmdet.utils import register_all_modules
    register_all_modules()
    import mmext.models  # noqa: F401
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DET_DEMO)
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def predict(model, data):
    with torch.no_grad():
        return model.test_step(copy.deepcopy(data))


def test_detector_with_compiled_backbone_predicts_as_eager():
    from mmdet.testing import demo_mm_inputs
    model = build_detector()
    eager = copy.deepcopy(model)
    counter = GraphCounter('eager')
    hook = CompileBackboneHook(backend=counter)
    # a hook receives the runner; through a model wrapper it finds the same
    # backbone
    runner = type('Runner', (), dict(model=model))
    hook.before_run(runner)
    hook.before_run(runner)  # a second run (e.g. test after train): no-op
    assert model.backbone._compiled_call_impl is not None
    assert model.state_dict().keys() == eager.state_dict().keys()

    torch.manual_seed(1)
    data = dict(demo_mm_inputs(2, [[3, 96, 128], [3, 64, 96]],
                               num_classes=4, with_mask=True))
    got, expected = predict(model, data), predict(eager, data)
    assert counter.count == 1  # the backbone ran compiled, as one graph
    assert sum(len(p.pred_instances) for p in expected) > 0
    for g, e in zip(got, expected):
        for key in ('bboxes', 'scores', 'labels', 'masks'):
            torch.testing.assert_close(g.pred_instances[key],
                                       e.pred_instances[key])


def test_tools_flag_and_runner(tmp_path):
    from mmext.apis.cli import load_cfg
    from mmext.apis.train import parse_args
    from mmext.engine import MMExtRunner
    args = parse_args([DET_DEMO, '--compile-backbone', '--work-dir',
                       str(tmp_path)])
    cfg = load_cfg(args)
    assert cfg.compile_backbone == dict(dynamic=None)
    assert load_cfg(parse_args([
        DET_DEMO, '--compile-backbone', 'dynamic', '--work-dir',
        str(tmp_path)
    ])).compile_backbone == dict(dynamic=True)
    with pytest.raises(SystemExit):
        parse_args([DET_DEMO, '--compile-backbone', 'fast'])

    cfg.compile_backbone = dict(backend='eager')
    cfg.launcher = 'none'
    runner = MMExtRunner.from_cfg(cfg)
    hooks = [h for h in runner.hooks if isinstance(h, CompileBackboneHook)]
    assert len(hooks) == 1 and hooks[0].compile_kwargs == dict(
        backend='eager')
    runner.call_hook('before_run')
    assert runner.model.backbone._compiled_call_impl is not None
