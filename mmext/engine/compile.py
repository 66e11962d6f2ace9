"""``torch.compile`` of a detector's or segmentor's backbone alone.

mmengine's own ``compile`` config key compiles the model's whole
``train_step`` (data preprocessing, heads, losses and the optimizer
update); a two-stage detector breaks that graph at every data-dependent
step (proposal sampling, NMS, RoI assignment) and it does not speed up
evaluation at all (only ``train_step`` is compiled). Compiling the
backbone alone captures the part that dominates the time in one graph.

Use it from a config::

    compile_backbone = True                     # torch.compile defaults
    compile_backbone = dict(dynamic=True)       # any torch.compile keyword

(:class:`~mmext.engine.MMExtRunner` turns the key into a
:class:`CompileBackboneHook`; with another runner list the hook in
``custom_hooks``), or with ``tools/train.py`` / ``tools/test.py
--compile-backbone``.

The backbone is compiled in place (``nn.Module.compile``): its class,
attributes and state-dict keys stay as they are, so checkpoints, layer-wise
lr decay, freezing and backbone losses work unchanged.
"""
from typing import Optional, Union

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from mmext.errors import ConfigError
from mmext.registry import HOOKS

__all__ = [
    'compile_backbone', 'compile_options', 'compile_backbone_hook',
    'CompileBackboneHook', 'GraphCounter', 'graph_break_count'
]

#: keywords of ``torch.compile`` a config may set
COMPILE_KEYS = ('fullgraph', 'dynamic', 'backend', 'mode', 'options',
                'disable')
#: inductor settings added unless a config sets them: torch 2.13's layout
#: optimisation of convolutions fails on Dual-ViT with dynamic shapes
#: (``ValueRangeError: Invalid ranges [0:-1]``, pytorch/pytorch#188422);
#: our convolutions get channels-last inputs already
INDUCTOR_OPTIONS = dict(layout_optimization=False)


def compile_options(value: Union[bool, dict, None]) -> Optional[dict]:
    """The ``torch.compile`` keywords of a ``compile_backbone`` setting
    (True: the defaults; False / None: no compilation)."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f'compile_backbone must be True/False or a dict of '
                        f'torch.compile keywords, got {value!r}')
    unknown = sorted(set(value) - set(COMPILE_KEYS))
    if unknown:
        raise ConfigError(f'compile_backbone: unknown keys {unknown}; '
                          f'torch.compile takes {list(COMPILE_KEYS)}')
    kwargs = dict(value)
    if kwargs.get('backend', 'inductor') == 'inductor' and \
            'mode' not in kwargs:  # torch.compile takes one of the two
        kwargs['options'] = {**INDUCTOR_OPTIONS, **kwargs.get('options', {})}
    return kwargs


def find_backbone(model: nn.Module) -> nn.Module:
    """``model.backbone``, looking through model wrappers (DDP) and
    test-time-augmentation models (``.module``)."""
    seen = model
    while True:
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if isinstance(backbone, nn.Module):
            return backbone
        inner = getattr(model, 'module', None)
        if not isinstance(inner, nn.Module):
            raise ConfigError(
                f'compile_backbone: {type(seen).__name__} has no backbone '
                '(it applies to detectors and segmentors with a '
                '`backbone` attribute); remove the setting')
        model = inner


def compile_backbone(model: nn.Module, options: Union[bool, dict] = True
                     ) -> nn.Module:
    """Compile the backbone of ``model`` in place and return it; a
    backbone that is already compiled is left alone."""
    kwargs = compile_options(options)
    backbone = find_backbone(model)
    if kwargs is None or getattr(backbone, '_compiled_call_impl', None):
        return backbone
    backbone.compile(**kwargs)
    shown = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
    print_log(
        f'compile_backbone: {type(backbone).__name__} compiled with '
        f'torch.compile({shown}); the first iterations (and the first '
        'of a new input size) are slow while it compiles.',
        logger='current')
    return backbone


@HOOKS.register_module()
class CompileBackboneHook(Hook):
    """Compiles ``runner.model``'s backbone before training, validation or
    testing runs (``before_run``); keywords are passed to
    ``torch.compile`` (e.g. ``dynamic=True``)."""

    priority = 'VERY_LOW'

    def __init__(self, **compile_kwargs):
        self.compile_kwargs = compile_options(compile_kwargs)

    def before_run(self, runner) -> None:
        compile_backbone(runner.model, self.compile_kwargs)


def compile_backbone_hook(cfg) -> Optional[CompileBackboneHook]:
    """The hook for a config's ``compile_backbone`` key (None without it).
    mmengine's ``compile`` key (the whole ``train_step``) and this one
    exclude each other."""
    kwargs = compile_options(cfg.get('compile_backbone'))
    if kwargs is None:
        return None
    if cfg.get('compile'):
        raise ConfigError(
            'the config sets both `compile` (mmengine: compiles the whole '
            'train_step) and `compile_backbone`; keep one of them')
    return CompileBackboneHook(**kwargs)


class GraphCounter:
    """A ``torch.compile`` backend that counts the graphs it is given (the
    first compilation, one per graph break, and every recompilation) and
    hands each to ``backend`` (a name: 'inductor', 'aot_eager', 'eager')::

        counter = GraphCounter('inductor')
        model = torch.compile(model, backend=counter)
        ...
        counter.count
    """

    def __init__(self, backend: str = 'inductor',
                 options: Optional[dict] = None):
        from torch._dynamo.backends.registry import lookup_backend
        self.backend = lookup_backend(backend)
        self.options = dict(options or {})  # inductor config while compiling
        self.count = 0

    def __call__(self, graph_module, example_inputs):
        self.count += 1
        with torch._inductor.config.patch(self.options):
            return self.backend(graph_module, example_inputs)


def graph_break_count() -> int:
    """Graph breaks dynamo has met since ``torch._dynamo.utils.counters``
    was last cleared."""
    return sum(torch._dynamo.utils.counters['graph_break'].values())
