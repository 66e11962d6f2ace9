"""Model specifications shared by the tools (``benchmark.py``,
``get_flops.py``, ``profile_breakdown.py``): which backbone to build, from a
registered type, a config snippet, a config file or a factory function."""
import argparse
import ast
import importlib.util
import json
import os.path as osp
import sys
from typing import Optional


def build_model(spec: dict):
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


def parse_shape(text: str):
    try:
        shape = [int(v) for v in text.lower().split('x')]
    except ValueError:
        shape = []
    if len(shape) != 4 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f'shape must look like 1x3x800x1344 (BxCxHxW), got {text!r}')
    return shape


def literal(text: str):
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


def model_cfg(args) -> dict:
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
            cfg = literal(model)
        if not isinstance(cfg, dict):
            raise SystemExit(f'the model snippet is not a dict: {model}')
    else:
        cfg = dict(type=model if '.' in model else f'mmext.{model}')
    if args.arch is not None:
        cfg['arch'] = args.arch
    for item in args.set or []:
        key, _, value = item.partition('=')
        try:
            cfg[key] = literal(value)
        except (ValueError, SyntaxError):
            cfg[key] = value  # a bare string
    if 'type' not in cfg:
        raise SystemExit('the model config has no "type"')
    return cfg


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model-spec arguments shared by benchmark.py, get_flops.py and
    tools/profile_breakdown.py (see :func:`model_cfg`)."""
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


def run_step(model, x, train: bool) -> None:
    """One :func:`training_step`, or one forward under
    ``torch.inference_mode()``."""
    if train:
        training_step(model, x)
        return
    import torch
    with torch.inference_mode():
        model(x)


def training_step(model, x) -> None:
    """Forward, backward of the sum of the means of all outputs, and
    clearing the gradients: the training step every tool measures."""
    from mmext.utils.complexity import iter_tensors
    out = model(x)
    sum(t.float().mean() for t in iter_tensors(out)).backward()
    model.zero_grad(set_to_none=True)
