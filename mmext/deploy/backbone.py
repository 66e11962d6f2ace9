"""Backbones (with their neck) as ONNX graphs with dynamic batch, height
and width, and what an mmext model needs before its export."""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmext.models.backbones import AViT, DualViT
from mmext.models.layers import ShiftWindowMSA
from .onnx_export import ExportError

#: dynamic axes of every exported image input
IMAGE_AXES = {0: 'batch', 2: 'height', 3: 'width'}


class FeatureGraph(nn.Module):
    """``backbone`` (then ``neck``) as one module: image -> tuple of maps."""

    def __init__(self, backbone: nn.Module, neck: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        feats = self.backbone(image)
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(feats)


def exportable_copy(model: nn.Module) -> Tuple[nn.Module, List[str]]:
    """A copy of ``model`` (eval mode) in the form that exports, and one
    line per change:

    * A-ViT runs its masked form (every token through every block, halted
      ones zeroed): token removal has data-dependent shapes.
    * Dual-ViT runs whole images: its tiled inference is a Python loop over
      the image size.
    * SyncBN becomes BatchNorm (the same in eval mode).
    """
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(copy.deepcopy(model)).eval()
    notes = []
    for name, module in model.named_modules():
        if isinstance(module, AViT) and module.token_removal:
            module.token_removal = False
            notes.append(f'{name or "model"}: A-ViT exported in its masked '
                         'form (token removal has data-dependent shapes)')
        if isinstance(module, DualViT) and module.test_tile_size:
            notes.append(f'{name or "model"}: Dual-ViT exported without its '
                         f'{module.test_tile_size}px tiled inference (whole '
                         'images)')
            module.test_tile_size = None
    return model, notes


def probe_example(module: nn.Module, inputs: Sequence[Tensor]) -> list:
    """Run ``module`` on the example inputs and return its outputs (a flat
    list); refuse an example on which a window attention sees a map of one
    window or less per side: there, torch.export takes the window count
    for the constant 1 in some of the graph's shape arithmetic, and the
    graph then fails on larger maps (smaller maps at run time are fine)."""
    seen = []
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, args, name=name: seen.append((name, mod, args[1])))
        for name, m in module.named_modules()
        if isinstance(m, ShiftWindowMSA)
    ]
    try:
        with torch.no_grad():
            outs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    height, width = inputs[0].shape[2:]
    # name the stage that needs the largest export size, so that one retry
    # at that size is enough
    worst = None
    for name, attn, (h, w) in seen:
        ws = attn.window_size
        if min(h, w) <= ws:
            need = max(height // h, width // w, 1) * (ws + 1)
            if worst is None or need > worst[0]:
                worst = (need, name, h, w, ws)
    if worst is not None:
        need, name, h, w, ws = worst
        raise ExportError(
            f'at {height}x{width} the window attention {name} sees a '
            f'{h}x{w} map (one {ws}x{ws} window per side), and a graph '
            'traced there breaks on larger maps: export at a size of at '
            f'least {need} pixels per side (--shape); the graph still runs '
            'smaller inputs')
    return list(outs) if isinstance(outs, (tuple, list)) else [outs]


def feature_graph(model: nn.Module, with_neck: bool = True) -> FeatureGraph:
    """The backbone (and neck, if the model has one) of a detector or
    segmentor, or a bare backbone."""
    backbone = getattr(model, 'backbone', model)
    neck = getattr(model, 'neck', None) if with_neck else None
    return FeatureGraph(backbone, neck)
